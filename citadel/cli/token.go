// Package cli holds citadel's meshctl commands.
package cli

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshd/meshd/citadel/ca"
	"github.com/meshd/meshd/citadel/token"
)

// NewTokenCommand returns `meshctl token`: it mints a service-account token
// that a file-mode meshd accepts at its CA, for running istio-agent or a
// proxyless gRPC workload on a laptop.
func NewTokenCommand() *cobra.Command {
	var (
		namespace, serviceAccount, caDir, keyFile, audience string
		ttl                                                 time.Duration
	)
	cmd := &cobra.Command{
		Use:   "token --namespace NS --service-account SA",
		Short: "Mint a service-account token for a file-mode meshd's CA",
		Long: "Mint a JWT naming a namespace and service account, signed with the token key a\n" +
			"file-mode meshd keeps beside its CA directory. Its CA accepts it (audience istio-ca)\n" +
			"as Kubernetes would accept a projected service-account token, e.g. as istio-agent's\n" +
			"./var/run/secrets/tokens/istio-token.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if namespace == "" || serviceAccount == "" {
				return errors.New("--namespace and --service-account are required")
			}
			if ttl <= 0 {
				return fmt.Errorf("--ttl %s: must be positive", ttl)
			}
			path := keyFile
			if path == "" {
				path = token.KeyPath(caDir)
			}
			key, err := token.LoadKey(path)
			if err != nil {
				return fmt.Errorf("%w (meshd creates the key when it starts in file mode; point --ca-dir or --key at it)", err)
			}
			tok, err := token.Mint(key, namespace, serviceAccount, []string{audience}, ttl, time.Now())
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), tok)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVarP(&namespace, "namespace", "n", "", "namespace of the workload")
	f.StringVar(&serviceAccount, "service-account", "", "service account of the workload")
	f.StringVar(&caDir, "ca-dir", ca.DefaultDir(), "meshd's CA directory (the token key is beside it)")
	f.StringVar(&keyFile, "key", "", "token signing key file (default: "+token.KeyFile+" beside --ca-dir)")
	f.StringVar(&audience, "audience", token.DefaultAudience, "token audience")
	f.DurationVar(&ttl, "ttl", time.Hour, "token lifetime")
	return cmd
}
