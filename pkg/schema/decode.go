package schema

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-multierror"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sschema "k8s.io/apimachinery/pkg/runtime/schema"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// Decode turns one YAML or JSON document into a typed object of a known kind.
// Decoding is strict: an unknown field, a value of the wrong type or a
// malformed duration is an error that names the field path (for example
// `spec.http[0].route[0].wieght: unknown field`). All such errors are
// returned at once, joined by go-multierror.
//
// Istio specs are then decoded by the same JSON shims istiod uses, so a value
// means here what it means there (durations such as "5m" included).
func Decode(doc []byte) (Object, Kind, error) {
	data, err := yaml.YAMLToJSON(doc)
	if err != nil {
		return nil, Kind{}, fmt.Errorf("not valid YAML: %w", err)
	}
	var tm metav1.TypeMeta
	if err := json.Unmarshal(data, &tm); err != nil {
		return nil, Kind{}, fmt.Errorf("not an object: %w", err)
	}
	if tm.Kind == "" || tm.APIVersion == "" {
		return nil, Kind{}, errors.New("apiVersion and kind are required")
	}
	gv, err := k8sschema.ParseGroupVersion(tm.APIVersion)
	if err != nil {
		return nil, Kind{}, fmt.Errorf("apiVersion %q: %w", tm.APIVersion, err)
	}
	kind, ok := ByGVK(gv.WithKind(tm.Kind))
	if !ok {
		return nil, Kind{}, fmt.Errorf("unknown kind %s %s (known: %s)", tm.APIVersion, tm.Kind, strings.Join(Names(), ", "))
	}
	obj, err := DecodeKind(kind, data)
	return obj, kind, err
}

// DecodeKind decodes JSON into an object of the given kind, strictly (see Decode).
func DecodeKind(kind Kind, data []byte) (Object, error) {
	obj := kind.New()
	if !kind.Istio {
		strictErrs, err := sigsjson.UnmarshalStrict(data, obj)
		if err != nil {
			return nil, fieldError(err)
		}
		if len(strictErrs) > 0 {
			var merr *multierror.Error
			for _, e := range strictErrs {
				merr = multierror.Append(merr, e)
			}
			return nil, flatten(merr)
		}
		setTypeMeta(obj, kind)
		return obj, nil
	}

	// Istio kinds: check the envelope strictly, then walk the spec against
	// the proto descriptor so every error carries its path.
	var env struct {
		metav1.TypeMeta `json:",inline"`
		Metadata        json.RawMessage `json:"metadata"`
		Spec            json.RawMessage `json:"spec"`
		Status          json.RawMessage `json:"status"`
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&env); err != nil {
		return nil, fieldError(err)
	}
	var merr *multierror.Error
	var meta metav1.ObjectMeta
	if len(env.Metadata) > 0 {
		strictErrs, err := sigsjson.UnmarshalStrict(env.Metadata, &meta)
		if err != nil {
			merr = multierror.Append(merr, fmt.Errorf("metadata: %w", fieldError(err)))
		}
		for _, e := range strictErrs {
			merr = multierror.Append(merr, fmt.Errorf("metadata: %w", e))
		}
	}
	spec := SpecOf(obj)
	if len(env.Spec) > 0 && !bytes.Equal(env.Spec, []byte("null")) {
		var v any
		d := json.NewDecoder(bytes.NewReader(env.Spec))
		d.UseNumber()
		if err := d.Decode(&v); err != nil {
			merr = multierror.Append(merr, fmt.Errorf("spec: %w", err))
		} else {
			for _, e := range checkMessage(spec.ProtoReflect().Descriptor(), v, "spec") {
				merr = multierror.Append(merr, e)
			}
		}
	}
	if merr != nil {
		return nil, flatten(merr)
	}
	// The envelope and spec are known good: keep the metadata decoded
	// above and let the spec's own JSON shim (the one istiod uses) decode
	// the spec, rather than parsing the whole document again.
	v := reflect.ValueOf(obj).Elem()
	v.FieldByName("ObjectMeta").Set(reflect.ValueOf(meta))
	if len(env.Spec) > 0 {
		if err := json.Unmarshal(env.Spec, spec); err != nil {
			return nil, fmt.Errorf("spec: %w", fieldError(err))
		}
	}
	if f := v.FieldByName("Status"); len(env.Status) > 0 && f.IsValid() {
		if err := json.Unmarshal(env.Status, f.Addr().Interface()); err != nil {
			return nil, fmt.Errorf("status: %w", fieldError(err))
		}
	}
	setTypeMeta(obj, kind)
	return obj, nil
}

// SpecOf returns the proto message that is the Spec of an Istio object.
// It panics if obj is not an Istio kind.
func SpecOf(obj Object) proto.Message {
	return reflect.ValueOf(obj).Elem().FieldByName("Spec").Addr().Interface().(proto.Message)
}

func setTypeMeta(obj Object, kind Kind) {
	obj.GetObjectKind().SetGroupVersionKind(kind.GVK())
}

func flatten(merr *multierror.Error) error {
	if merr == nil {
		return nil
	}
	if len(merr.Errors) == 1 {
		return merr.Errors[0]
	}
	merr.ErrorFormat = func(es []error) string {
		s := make([]string, len(es))
		for i, e := range es {
			s[i] = e.Error()
		}
		return strings.Join(s, "; ")
	}
	return merr
}

// fieldError rewrites encoding/json type errors to name the field path.
func fieldError(err error) error {
	var ute *json.UnmarshalTypeError
	if errors.As(err, &ute) && ute.Field != "" {
		return fmt.Errorf("%s: cannot use JSON %s as %s", ute.Field, ute.Value, ute.Type)
	}
	return err
}

// checkMessage walks a decoded JSON value against a proto message descriptor
// and reports unknown fields and values of the wrong shape, with their paths.
func checkMessage(md protoreflect.MessageDescriptor, v any, path string) []error {
	if wkt, ok := wellKnown[md.FullName()]; ok {
		if err := wkt(v); err != nil {
			return []error{fmt.Errorf("%s: %w", path, err)}
		}
		return nil
	}
	obj, ok := v.(map[string]any)
	if !ok {
		if v == nil {
			return nil
		}
		return []error{fmt.Errorf("%s: expected an object, got %s", path, jsonType(v))}
	}
	var errs []error
	fields := md.Fields()
	for _, key := range sortedKeys(obj) {
		fd := fields.ByJSONName(key)
		if fd == nil {
			fd = fields.ByName(protoreflect.Name(key))
		}
		sub := path + "." + key
		if fd == nil {
			errs = append(errs, fmt.Errorf("%s: unknown field", sub))
			continue
		}
		errs = append(errs, checkField(fd, obj[key], sub)...)
	}
	return errs
}

func checkField(fd protoreflect.FieldDescriptor, v any, path string) []error {
	if v == nil {
		return nil
	}
	switch {
	case fd.IsMap():
		m, ok := v.(map[string]any)
		if !ok {
			return []error{fmt.Errorf("%s: expected a map, got %s", path, jsonType(v))}
		}
		var errs []error
		for _, k := range sortedKeys(m) {
			errs = append(errs, checkSingle(fd.MapValue(), m[k], fmt.Sprintf("%s[%s]", path, k))...)
		}
		return errs
	case fd.IsList():
		l, ok := v.([]any)
		if !ok {
			return []error{fmt.Errorf("%s: expected a list, got %s", path, jsonType(v))}
		}
		var errs []error
		for i, e := range l {
			errs = append(errs, checkSingle(fd, e, fmt.Sprintf("%s[%d]", path, i))...)
		}
		return errs
	}
	return checkSingle(fd, v, path)
}

func checkSingle(fd protoreflect.FieldDescriptor, v any, path string) []error {
	bad := func(want string) []error {
		return []error{fmt.Errorf("%s: expected %s, got %s", path, want, jsonType(v))}
	}
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return checkMessage(fd.Message(), v, path)
	case protoreflect.StringKind, protoreflect.BytesKind:
		if _, ok := v.(string); !ok {
			return bad("a string")
		}
	case protoreflect.BoolKind:
		if _, ok := v.(bool); !ok {
			return bad("a boolean")
		}
	case protoreflect.EnumKind:
		switch e := v.(type) {
		case string:
			if fd.Enum().Values().ByName(protoreflect.Name(e)) == nil {
				return []error{fmt.Errorf("%s: unknown value %q (one of %s)", path, e, enumNames(fd.Enum()))}
			}
		case json.Number:
		default:
			return bad("an enum name")
		}
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		if !isNumber(v, true) {
			return bad("a number")
		}
	default: // integers
		if !isNumber(v, false) {
			return bad("an integer")
		}
	}
	return nil
}

func isNumber(v any, float bool) bool {
	var s string
	switch n := v.(type) {
	case json.Number:
		s = n.String()
	case string: // proto JSON accepts quoted numbers
		s = n
	default:
		return false
	}
	if float {
		_, err := strconv.ParseFloat(s, 64)
		return err == nil
	}
	_, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		_, err = strconv.ParseUint(s, 10, 64)
	}
	return err == nil
}

// wellKnown checks the JSON forms of the well-known types Istio uses.
var wellKnown = map[protoreflect.FullName]func(any) error{
	"google.protobuf.Duration": func(v any) error {
		s, ok := v.(string)
		if !ok {
			return fmt.Errorf("expected a duration string such as \"1.5s\", got %s", jsonType(v))
		}
		if _, err := time.ParseDuration(s); err != nil {
			return fmt.Errorf("invalid duration %q", s)
		}
		return nil
	},
	"google.protobuf.Timestamp": func(v any) error {
		if _, ok := v.(string); !ok {
			return fmt.Errorf("expected a timestamp string, got %s", jsonType(v))
		}
		return nil
	},
	"google.protobuf.Struct": func(v any) error {
		if _, ok := v.(map[string]any); !ok {
			return fmt.Errorf("expected an object, got %s", jsonType(v))
		}
		return nil
	},
	"google.protobuf.Value":       func(any) error { return nil },
	"google.protobuf.Any":         func(any) error { return nil },
	"google.protobuf.ListValue":   func(v any) error { return expect(v, "a list", func(v any) bool { _, ok := v.([]any); return ok }) },
	"google.protobuf.BoolValue":   func(v any) error { return expect(v, "a boolean", func(v any) bool { _, ok := v.(bool); return ok }) },
	"google.protobuf.StringValue": func(v any) error { return expect(v, "a string", func(v any) bool { _, ok := v.(string); return ok }) },
	"google.protobuf.UInt32Value": intWrapper, "google.protobuf.Int32Value": intWrapper,
	"google.protobuf.UInt64Value": intWrapper, "google.protobuf.Int64Value": intWrapper,
	"google.protobuf.DoubleValue": floatWrapper, "google.protobuf.FloatValue": floatWrapper,
}

func intWrapper(v any) error {
	return expect(v, "an integer", func(v any) bool { return isNumber(v, false) })
}
func floatWrapper(v any) error {
	return expect(v, "a number", func(v any) bool { return isNumber(v, true) })
}

func expect(v any, want string, ok func(any) bool) error {
	if !ok(v) {
		return fmt.Errorf("expected %s, got %s", want, jsonType(v))
	}
	return nil
}

func enumNames(ed protoreflect.EnumDescriptor) string {
	vals := ed.Values()
	names := make([]string, vals.Len())
	for i := range names {
		names[i] = string(vals.Get(i).Name())
	}
	return strings.Join(names, ", ")
}

func jsonType(v any) string {
	switch t := v.(type) {
	case nil:
		return "null"
	case map[string]any:
		return "an object"
	case []any:
		return "a list"
	case string:
		return fmt.Sprintf("the string %q", t)
	case bool:
		return fmt.Sprintf("the boolean %v", t)
	case json.Number:
		return "the number " + t.String()
	}
	return fmt.Sprintf("%T", v)
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
