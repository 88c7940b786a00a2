package cli_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/meshd/meshd/galley/cli"
)

// run executes a command as meshctl would and returns its output and the
// exit code meshctl would use.
func run(t *testing.T, cmd *cobra.Command, stdin string, args ...string) (string, int) {
	t.Helper()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetIn(strings.NewReader(stdin))
	cmd.SetArgs(args)
	cmd.SilenceUsage = true
	cmd.SilenceErrors = true
	err := cmd.Execute()
	code := 0
	if err != nil {
		code = 1
		var ee *cli.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		}
		out.WriteString("meshctl: " + err.Error() + "\n")
	}
	return out.String(), code
}

func contains(t *testing.T, out string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
}

func TestValidateValidFiles(t *testing.T) {
	out, code := run(t, cli.ValidateCommand(), "", "-f", "../validation/testdata/valid")
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	contains(t, out, "ok: VirtualService default/bookinfo (../validation/testdata/valid/bookinfo.yaml, document 1)",
		"ok: DestinationRule shop/reviews")
	if strings.Contains(out, "Error") || strings.Contains(out, "Warning") {
		t.Errorf("unexpected errors or warnings:\n%s", out)
	}
}

func TestValidateInvalidFile(t *testing.T) {
	out, code := run(t, cli.ValidateCommand(), "", "-f", "testdata/invalid.yaml")
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	contains(t, out,
		"Error: VirtualService default/everything (testdata/invalid.yaml, document 0): spec.hosts[0]: wildcard host * is not allowed for virtual services bound to the mesh gateway",
		"Error: VirtualService default/everything (testdata/invalid.yaml, document 0): spec.http[0].timeout: only durations to ms precision are supported",
		"Error: DestinationRule default/reviews (testdata/invalid.yaml, document 1): spec.trafficPolicy.outlierDetection.interval: only durations to ms precision are supported",
		"skipped Deployment reviews (testdata/invalid.yaml, document 2)",
		"Error: VirtualService typo (testdata/invalid.yaml, document 3): spec.http[0].route[0].wieght: unknown field",
		"meshctl: 3 of 3 objects are invalid")
}

func TestValidateStdin(t *testing.T) {
	vs := "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r, namespace: shop}\nspec: {hosts: [r], http: [{route: [{destination: {host: r, subset: a}, weight: 50}, {destination: {host: r, subset: b}, weight: 30}]}]}\n"
	out, code := run(t, cli.ValidateCommand(), vs, "-f", "-")
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	contains(t, out, "Warning: VirtualService shop/r (<stdin>, document 0): spec.http[0].route: weights sum to 80, not 100", "ok: VirtualService shop/r")
}

func TestValidateNeedsInput(t *testing.T) {
	out, code := run(t, cli.ValidateCommand(), "")
	if code == 0 || !strings.Contains(out, "no input") {
		t.Errorf("exit %d:\n%s", code, out)
	}
	out, code = run(t, cli.ValidateCommand(), "", "-f", "does-not-exist.yaml")
	if code == 0 || !strings.Contains(out, "does-not-exist.yaml") {
		t.Errorf("exit %d:\n%s", code, out)
	}
}

func TestAnalyzePitfalls(t *testing.T) {
	out, code := run(t, cli.AnalyzeCommand(), "", "--config-dir", "../analyze/testdata/pitfalls")
	if code != cli.FoundIssuesExitCode {
		t.Errorf("exit %d, want %d", code, cli.FoundIssuesExitCode)
	}
	contains(t, out,
		"Error [MESHD0003] (VirtualService shop/api-routes, VirtualService shop/web-routes, Gateway shop/ingress)",
		"Error [MESHD0005] (VirtualService shop/api)",
		"Error [MESHD0008] (VirtualService shop/api, DestinationRule shop/api)",
		"Error [MESHD0011] (VirtualService shop/admin)",
		"Warning [MESHD0007] (DestinationRule shop/payments)",
		"Warning [MESHD0009] (DestinationRule shop/web, Service shop/web)",
		"Warning [MESHD0010] (Pod shop/worker-1)",
		"meshctl: analyzers found 4 issues at level Error or above in directory ../analyze/testdata/pitfalls")
}

func TestAnalyzeBookinfoIsClean(t *testing.T) {
	out, code := run(t, cli.AnalyzeCommand(), "", "--config-dir", "../analyze/testdata/bookinfo")
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	contains(t, out, "No validation issues found when analyzing directory ../analyze/testdata/bookinfo.")
}

func TestAnalyzeThresholdsAndJSON(t *testing.T) {
	out, code := run(t, cli.AnalyzeCommand(), "", "--config-dir", "../analyze/testdata/pitfalls", "-o", "json", "--output-threshold", "Warning", "--failure-threshold", "Warning", "-n", "shop")
	if code != cli.FoundIssuesExitCode {
		t.Errorf("exit %d", code)
	}
	var findings []struct {
		Code    string
		Level   string
		Objects []struct{ Kind, Namespace, Name string }
	}
	body := out[:strings.LastIndex(out, "meshctl:")]
	if err := json.Unmarshal([]byte(body), &findings); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if len(findings) != 7 {
		t.Errorf("%d findings, want 7:\n%s", len(findings), out)
	}
	contains(t, out, "analyzers found 7 issues at level Warning or above")

	out, code = run(t, cli.AnalyzeCommand(), "", "--config-dir", "../analyze/testdata/pitfalls", "-n", "elsewhere")
	if code != 0 {
		t.Errorf("findings outside the namespace counted: exit %d\n%s", code, out)
	}
}

func TestListAnalyzers(t *testing.T) {
	out, code := run(t, cli.AnalyzeCommand(), "", "--list-analyzers")
	if code != 0 {
		t.Fatal(out)
	}
	contains(t, out, "MESHD0003", "ConflictingGatewayRoutes", "MESHD0010", "PodWithoutService")
}

func TestCommands(t *testing.T) {
	var names []string
	for _, c := range cli.Commands() {
		names = append(names, c.Name())
	}
	if strings.Join(names, ",") != "validate,analyze" {
		t.Errorf("commands %v", names)
	}
}

// The Bookinfo example meshd ships has no error-level problem.
func TestAnalyzeBookinfoExample(t *testing.T) {
	out, code := run(t, cli.AnalyzeCommand(), "", "--config-dir", "../../examples/bookinfo")
	if code != 0 || strings.Contains(out, "Error [") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	t.Log(out)
	out, code = run(t, cli.ValidateCommand(), "", "-f", "../../examples/bookinfo")
	if code != 0 {
		t.Fatalf("validate: exit %d:\n%s", code, out)
	}
}
