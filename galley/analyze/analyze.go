// Package analyze finds configuration mistakes that no single object shows:
// routes to hosts or subsets that do not exist, gateways that are missing,
// VirtualServices on one gateway whose matches overlap, pods no Service
// selects. It reads a store (filled from a cluster or a config directory)
// and reports findings, each with a stable code, a level and the objects
// involved, in the manner of `istioctl analyze`.
package analyze

import (
	"fmt"
	"sort"
	"strings"

	"github.com/meshd/meshd/pkg/schema"
	"github.com/meshd/meshd/pkg/store"
)

// Level says how bad a finding is.
type Level int

// The levels, least severe first.
const (
	Info Level = iota
	Warning
	Error
)

func (l Level) String() string {
	switch l {
	case Info:
		return "Info"
	case Warning:
		return "Warning"
	case Error:
		return "Error"
	}
	return fmt.Sprintf("Level(%d)", int(l))
}

// Ref names one object.
type Ref struct {
	Kind      string
	Namespace string
	Name      string
}

func (r Ref) String() string {
	if r.Namespace == "" {
		return r.Kind + " " + r.Name
	}
	return r.Kind + " " + r.Namespace + "/" + r.Name
}

func refOf(obj schema.Object) Ref {
	return Ref{Kind: obj.GetObjectKind().GroupVersionKind().Kind, Namespace: obj.GetNamespace(), Name: obj.GetName()}
}

// Finding is one problem.
type Finding struct {
	// Code identifies the kind of problem, e.g. MESHD0004; stable across
	// releases, so that it can be searched for and suppressed.
	Code string
	// Level is how bad it is.
	Level Level
	// Message says what is wrong, in one line.
	Message string
	// Objects are the objects involved, the first being the one to fix.
	Objects []Ref
}

func (f Finding) String() string {
	objs := make([]string, len(f.Objects))
	for i, o := range f.Objects {
		objs[i] = o.String()
	}
	return fmt.Sprintf("%s [%s] (%s) %s", f.Level, f.Code, strings.Join(objs, ", "), f.Message)
}

// Analyzer is one check.
type Analyzer struct {
	// Code is the code of the findings it reports.
	Code string
	// Name is a short CamelCase name, e.g. DestinationHostNotFound.
	Name string
	// Level is the level of its findings.
	Level Level
	// Description says what it looks for.
	Description string

	run func(a *analysis)
}

// Options tune an analysis.
type Options struct {
	// DomainSuffix is the cluster's DNS domain; "" means cluster.local.
	DomainSuffix string
}

// Analyzers lists every check, in code order.
var Analyzers = []Analyzer{
	{Code: "MESHD0001", Name: "InvalidConfig", Level: Error, run: invalidConfig,
		Description: "An object breaks a validation rule; the webhook would refuse it and pilot ignores it."},
	{Code: "MESHD0002", Name: "ConfigWarning", Level: Warning, run: configWarnings,
		Description: "An object is accepted, but something in it is probably not what was meant."},
	{Code: "MESHD0003", Name: "ConflictingGatewayRoutes", Level: Error, run: conflictingGatewayRoutes,
		Description: "Two VirtualServices bound to the same gateway for the same host have overlapping matches, so a request that matches both goes to either."},
	{Code: "MESHD0004", Name: "ShadowedGatewayRoutes", Level: Warning, run: shadowedGatewayRoutes,
		Description: "A VirtualService bound to a gateway has overlapping matches with another for a host its wildcard also covers; for that host only the more specific one applies."},
	{Code: "MESHD0005", Name: "DestinationHostNotFound", Level: Error, run: destinationHostNotFound,
		Description: "A route sends traffic to a host that no Service or ServiceEntry defines."},
	{Code: "MESHD0006", Name: "VirtualServiceHostNotFound", Level: Warning, run: virtualServiceHostNotFound,
		Description: "A VirtualService for the mesh names a host that no Service or ServiceEntry defines, so no sidecar uses it."},
	{Code: "MESHD0007", Name: "DestinationRuleHostNotFound", Level: Warning, run: destinationRuleHostNotFound,
		Description: "A DestinationRule is for a host that no Service or ServiceEntry defines, so it has no effect."},
	{Code: "MESHD0008", Name: "SubsetNotFound", Level: Error, run: subsetNotFound,
		Description: "A route sends traffic to a subset that no DestinationRule for the host defines."},
	{Code: "MESHD0009", Name: "SubsetSelectsNoPods", Level: Warning, run: subsetSelectsNoPods,
		Description: "A DestinationRule subset's labels select none of its Service's pods."},
	{Code: "MESHD0010", Name: "PodWithoutService", Level: Warning, run: podWithoutService,
		Description: "A Pod is selected by no Service; Istio needs every pod to belong to one, even if it exposes no port."},
	{Code: "MESHD0011", Name: "GatewayNotFound", Level: Error, run: gatewayNotFound,
		Description: "A VirtualService is bound to a gateway that does not exist."},
}

// Analyze runs every analyzer over the store and returns the findings,
// most severe first, then by code and objects.
func Analyze(s *store.Store, opts Options) []Finding {
	if opts.DomainSuffix == "" {
		opts.DomainSuffix = "cluster.local"
	}
	a := &analysis{s: s, suffix: opts.DomainSuffix}
	for _, an := range Analyzers {
		a.current = an
		an.run(a)
	}
	sort.SliceStable(a.findings, func(i, j int) bool {
		x, y := a.findings[i], a.findings[j]
		if x.Level != y.Level {
			return x.Level > y.Level
		}
		if x.Code != y.Code {
			return x.Code < y.Code
		}
		return fmt.Sprint(x.Objects) < fmt.Sprint(y.Objects)
	})
	return a.findings
}

// HasErrors reports whether any finding is at error level.
func HasErrors(findings []Finding) bool {
	for _, f := range findings {
		if f.Level == Error {
			return true
		}
	}
	return false
}

// analysis is the state of one run.
type analysis struct {
	s        *store.Store
	suffix   string
	current  Analyzer
	findings []Finding
}

func (a *analysis) report(objs []Ref, format string, args ...any) {
	a.findings = append(a.findings, Finding{
		Code:    a.current.Code,
		Level:   a.current.Level,
		Message: fmt.Sprintf(format, args...),
		Objects: objs,
	})
}
