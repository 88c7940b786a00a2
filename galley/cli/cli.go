// Package cli holds meshctl's galley commands: `validate`, which runs the
// admission webhook's rules over files offline, and `analyze`, which looks
// for mistakes across objects in a cluster or a config directory, as
// istioctl's commands of the same names do.
package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	istioclient "istio.io/client-go/pkg/clientset/versioned"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sschema "k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/meshd/meshd/galley/analyze"
	"github.com/meshd/meshd/galley/validation"
	"github.com/meshd/meshd/pkg/schema"
	"github.com/meshd/meshd/pkg/source/configdir"
	"github.com/meshd/meshd/pkg/source/kube"
	"github.com/meshd/meshd/pkg/store"
)

// Commands returns every galley command, for cmd/meshctl.
func Commands() []*cobra.Command {
	return []*cobra.Command{ValidateCommand(), AnalyzeCommand()}
}

// ExitError is an error that asks meshctl for a particular exit code.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

// ExitCode is the process exit code.
func (e *ExitError) ExitCode() int { return e.Code }

// FoundIssuesExitCode is istioctl analyze's exit code when it finds
// problems at or above the failure threshold; scripts written for istioctl
// keep working.
const FoundIssuesExitCode = 79

// ValidateCommand is `meshctl validate -f FILE...`.
func ValidateCommand() *cobra.Command {
	var files []string
	var namespace string
	cmd := &cobra.Command{
		Use:   "validate -f FILE...",
		Short: "Check Istio config files against the rules of meshd's admission webhook",
		Long: `Validate decodes every object in the given files (YAML or JSON, several
documents per file; a directory means every .yaml, .yml and .json file under
it; - means standard input) strictly, and checks each Istio object against the
same rules the admission webhook applies. Kinds meshd does not know (such as
Deployments) are skipped. It exits non-zero if any object is invalid.`,
		Example: `  meshctl validate -f samples/bookinfo/networking/
  kubectl get vs -o yaml | meshctl validate -f -`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(files) == 0 {
				return errors.New("no input: give files with -f")
			}
			return validateFiles(cmd.InOrStdin(), cmd.OutOrStdout(), files, namespace)
		},
	}
	cmd.Flags().StringSliceVarP(&files, "filename", "f", nil, "file, directory or - (stdin) to validate; repeatable")
	cmd.Flags().StringVarP(&namespace, "namespace", "n", metav1.NamespaceDefault, "namespace of objects that do not name one")
	return cmd
}

// document is one YAML document and where it came from.
type document struct {
	source string
	index  int
	data   []byte
}

func (d document) where() string { return fmt.Sprintf("%s, document %d", d.source, d.index) }

func validateFiles(stdin io.Reader, out io.Writer, inputs []string, namespace string) error {
	docs, err := readDocuments(stdin, inputs)
	if err != nil {
		return err
	}
	var valid, invalid, skipped int
	for _, d := range docs {
		obj, err := decode(d.data)
		switch {
		case errors.Is(err, errUnknownKind):
			skipped++
			fmt.Fprintf(out, "skipped %s (%s): %v\n", describe(d.data), d.where(), err)
			continue
		case err != nil:
			invalid++
			fmt.Fprintf(out, "Error: %s (%s): %v\n", describe(d.data), d.where(), err)
			continue
		}
		if obj.GetNamespace() == "" {
			obj.SetNamespace(namespace)
		}
		name := kindOf(obj) + " " + obj.GetNamespace() + "/" + obj.GetName()
		warnings, err := validation.Validate(obj)
		for _, w := range warnings {
			fmt.Fprintf(out, "Warning: %s (%s): %s\n", name, d.where(), w)
		}
		if err != nil {
			invalid++
			for _, e := range validation.Errors(err) {
				fmt.Fprintf(out, "Error: %s (%s): %v\n", name, d.where(), e)
			}
			continue
		}
		valid++
		fmt.Fprintf(out, "ok: %s (%s)\n", name, d.where())
	}
	if invalid > 0 {
		return &ExitError{Code: 1, Err: fmt.Errorf("%d of %d objects are invalid", invalid, valid+invalid)}
	}
	if valid == 0 && skipped == 0 {
		return errors.New("no objects found in the input")
	}
	return nil
}

var errUnknownKind = errors.New("not a kind meshd validates")

// decode decodes one document strictly; a kind meshd does not know is
// errUnknownKind rather than a failure.
func decode(doc []byte) (schema.Object, error) {
	var tm metav1.TypeMeta
	if err := sigsyaml.Unmarshal(doc, &tm); err == nil && tm.Kind != "" && tm.APIVersion != "" {
		if gv, err := k8sschema.ParseGroupVersion(tm.APIVersion); err == nil {
			if _, ok := schema.ByGVK(gv.WithKind(tm.Kind)); !ok {
				return nil, errUnknownKind
			}
		}
	}
	obj, _, err := schema.Decode(doc)
	return obj, err
}

func kindOf(obj schema.Object) string { return obj.GetObjectKind().GroupVersionKind().Kind }

// describe names a document that may not decode: "Kind name".
func describe(doc []byte) string {
	var head struct {
		Kind     string `json:"kind"`
		Metadata struct {
			Name      string `json:"name"`
			Namespace string `json:"namespace"`
		} `json:"metadata"`
	}
	if err := sigsyaml.Unmarshal(doc, &head); err != nil || head.Kind == "" {
		return "object"
	}
	if head.Metadata.Namespace != "" {
		return head.Kind + " " + head.Metadata.Namespace + "/" + head.Metadata.Name
	}
	return head.Kind + " " + head.Metadata.Name
}

// readDocuments splits every input into YAML documents.
func readDocuments(stdin io.Reader, inputs []string) ([]document, error) {
	var docs []document
	for _, in := range inputs {
		if in == "-" {
			data, err := io.ReadAll(stdin)
			if err != nil {
				return nil, fmt.Errorf("reading standard input: %w", err)
			}
			ds, err := splitDocuments("<stdin>", data)
			if err != nil {
				return nil, err
			}
			docs = append(docs, ds...)
			continue
		}
		fi, err := os.Stat(in)
		if err != nil {
			return nil, err
		}
		var paths []string
		if fi.IsDir() {
			err := filepath.WalkDir(in, func(p string, e fs.DirEntry, err error) error {
				if err != nil {
					return err
				}
				switch strings.ToLower(filepath.Ext(p)) {
				case ".yaml", ".yml", ".json":
					if !e.IsDir() {
						paths = append(paths, p)
					}
				}
				return nil
			})
			if err != nil {
				return nil, err
			}
		} else {
			paths = []string{in}
		}
		for _, p := range paths {
			data, err := os.ReadFile(p)
			if err != nil {
				return nil, err
			}
			ds, err := splitDocuments(p, data)
			if err != nil {
				return nil, err
			}
			docs = append(docs, ds...)
		}
	}
	return docs, nil
}

func splitDocuments(source string, data []byte) ([]document, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var docs []document
	for i := 0; ; i++ {
		d, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s, document %d: %w", source, i, err)
		}
		if isEmpty(d) {
			continue
		}
		docs = append(docs, document{source: source, index: i, data: d})
	}
}

// isEmpty is true for a document of only comments and blank lines.
func isEmpty(doc []byte) bool {
	for _, l := range bytes.Split(doc, []byte("\n")) {
		l = bytes.TrimSpace(l)
		if len(l) > 0 && l[0] != '#' && !bytes.Equal(l, []byte("---")) {
			return false
		}
	}
	return true
}

type analyzeFlags struct {
	configDir        string
	kubeconfig       string
	context          string
	namespace        string
	allNamespaces    bool
	output           string
	outputThreshold  string
	failureThreshold string
	timeout          time.Duration
	listAnalyzers    bool
	domainSuffix     string
}

// AnalyzeCommand is `meshctl analyze`.
func AnalyzeCommand() *cobra.Command {
	f := &analyzeFlags{}
	cmd := &cobra.Command{
		Use:   "analyze [--config-dir DIR | --kubeconfig FILE]",
		Short: "Find mistakes across Istio config objects, in a cluster or a config directory",
		Long: `Analyze loads the mesh's objects (from the cluster of the kubeconfig, or with
--config-dir from a directory of YAML files, as meshd's file mode reads it)
and reports problems no single object shows: routes to hosts or subsets that
do not exist, gateways that are missing, VirtualServices on one gateway with
overlapping matches, DestinationRule subsets that select no pods, pods that no
Service selects, as well as every object that breaks a validation rule.

Each finding has a code (see --list-analyzers), a level and the objects
involved. The exit code is 79 (as istioctl's) when a finding is at or above
--failure-threshold.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runAnalyze(cmd.Context(), cmd.OutOrStdout(), f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.configDir, "config-dir", "", "analyze a directory of YAML files instead of a cluster")
	fl.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
	fl.StringVar(&f.context, "context", "", "kubeconfig context")
	fl.StringVarP(&f.namespace, "namespace", "n", "", "only report findings about objects in this namespace")
	fl.BoolVarP(&f.allNamespaces, "all-namespaces", "A", false, "report findings in every namespace (the default when -n is not given)")
	fl.StringVarP(&f.output, "output", "o", "text", "output format: text, json or yaml")
	fl.StringVar(&f.outputThreshold, "output-threshold", "Info", "lowest level shown: Info, Warning or Error")
	fl.StringVar(&f.failureThreshold, "failure-threshold", "Error", "lowest level that makes the exit code non-zero: Info, Warning or Error")
	fl.DurationVar(&f.timeout, "timeout", 30*time.Second, "how long to wait for the cluster's objects")
	fl.BoolVar(&f.listAnalyzers, "list-analyzers", false, "list the analyzers and their codes, then exit")
	fl.StringVar(&f.domainSuffix, "domain-suffix", "cluster.local", "the cluster's DNS domain")
	return cmd
}

func parseLevel(s string) (analyze.Level, error) {
	for _, l := range []analyze.Level{analyze.Info, analyze.Warning, analyze.Error} {
		if strings.EqualFold(s, l.String()) {
			return l, nil
		}
	}
	return 0, fmt.Errorf("unknown level %q (Info, Warning or Error)", s)
}

func runAnalyze(ctx context.Context, out io.Writer, f *analyzeFlags) error {
	if f.listAnalyzers {
		for _, a := range analyze.Analyzers {
			fmt.Fprintf(out, "%s  %-8s %-28s %s\n", a.Code, a.Level, a.Name, a.Description)
		}
		return nil
	}
	showFrom, err := parseLevel(f.outputThreshold)
	if err != nil {
		return err
	}
	failFrom, err := parseLevel(f.failureThreshold)
	if err != nil {
		return err
	}
	if f.configDir != "" && (f.kubeconfig != "" || f.context != "") {
		return errors.New("--config-dir and --kubeconfig/--context are exclusive")
	}
	if ctx == nil {
		ctx = context.Background()
	}
	var s *store.Store
	var source string
	if f.configDir != "" {
		source = "directory " + f.configDir
		s, err = configdir.Load(slog.New(slog.DiscardHandler), f.configDir)
		if err != nil {
			// A file that does not decode is a finding of its own kind: say
			// so and go on with the rest, as meshd's file mode does.
			fmt.Fprintf(out, "Error: some files were not loaded: %v\n", err)
			if s == nil {
				return err
			}
		}
	} else {
		source, s, err = loadCluster(ctx, f)
		if err != nil {
			return err
		}
	}

	findings := analyze.Analyze(s, analyze.Options{DomainSuffix: f.domainSuffix})
	var shown []analyze.Finding
	failed := 0
	for _, fd := range findings {
		if f.namespace != "" && !f.allNamespaces && (len(fd.Objects) == 0 || fd.Objects[0].Namespace != f.namespace) {
			continue
		}
		if fd.Level >= failFrom {
			failed++
		}
		if fd.Level >= showFrom {
			shown = append(shown, fd)
		}
	}
	if err := printFindings(out, f.output, shown, source); err != nil {
		return err
	}
	if failed > 0 {
		return &ExitError{Code: FoundIssuesExitCode, Err: fmt.Errorf("analyzers found %d issues at level %s or above in %s", failed, failFrom, source)}
	}
	return nil
}

func printFindings(out io.Writer, format string, findings []analyze.Finding, source string) error {
	type jsonFinding struct {
		Code    string        `json:"code"`
		Level   string        `json:"level"`
		Message string        `json:"message"`
		Objects []analyze.Ref `json:"objects"`
	}
	var list []jsonFinding
	for _, f := range findings {
		list = append(list, jsonFinding{f.Code, f.Level.String(), f.Message, f.Objects})
	}
	switch format {
	case "text", "":
		if len(findings) == 0 {
			fmt.Fprintf(out, "No validation issues found when analyzing %s.\n", source)
		}
		for _, f := range findings {
			fmt.Fprintln(out, f.String())
		}
		return nil
	case "json":
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if list == nil {
			list = []jsonFinding{}
		}
		return enc.Encode(list)
	case "yaml":
		b, err := sigsyaml.Marshal(list)
		if err != nil {
			return err
		}
		_, err = out.Write(b)
		return err
	}
	return fmt.Errorf("unknown output format %q (text, json or yaml)", format)
}

// loadCluster fills a store from the cluster through meshd's own informer
// source, waits for it to sync, and stops it: a one-shot snapshot.
func loadCluster(ctx context.Context, f *analyzeFlags) (string, *store.Store, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if f.kubeconfig != "" {
		rules.ExplicitPath = f.kubeconfig
	}
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: f.context})
	cfg, err := cc.ClientConfig()
	if err != nil {
		return "", nil, fmt.Errorf("loading kubeconfig: %w", err)
	}
	kc, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return "", nil, err
	}
	ic, err := istioclient.NewForConfig(cfg)
	if err != nil {
		return "", nil, err
	}
	src, err := kube.New(slog.New(slog.DiscardHandler), kc, ic, "istio-system")
	if err != nil {
		return "", nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- src.Start(ctx) }()
	wctx, wcancel := context.WithTimeout(ctx, f.timeout)
	defer wcancel()
	if err := src.Store().WaitForSync(wctx); err != nil {
		return "", nil, fmt.Errorf("reading the cluster's objects from %s: %w", cfg.Host, err)
	}
	cancel()
	<-done
	return "cluster " + cfg.Host, src.Store(), nil
}
