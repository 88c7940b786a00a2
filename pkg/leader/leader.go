// Package leader elects one meshd replica to run the singleton work, with
// client-go's leader election on a coordination.k8s.io Lease.
package leader

import (
	"context"
	"log/slog"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	"github.com/meshd/meshd/pkg/component"
)

// Elector runs leader election on the Lease Namespace/Name.
type Elector struct {
	Log       *slog.Logger
	Client    kubernetes.Interface
	Namespace string
	Name      string
	// Identity names this replica in the Lease (the pod name, typically).
	Identity string
	// LeaseDuration, RenewDeadline and RetryPeriod are client-go's; zero
	// values take Kubernetes' usual 15s, 10s and 2s.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
}

var _ component.Elector = (*Elector)(nil)

// Run campaigns for the Lease until ctx ends. Each time this replica wins,
// lead is called with a context that ends when the lease is lost (at the
// latest one RenewDeadline after the last successful renewal); the replica
// then campaigns again.
func (e *Elector) Run(ctx context.Context, lead func(ctx context.Context)) {
	lease, renew, retry := e.LeaseDuration, e.RenewDeadline, e.RetryPeriod
	if lease == 0 {
		lease, renew, retry = 15*time.Second, 10*time.Second, 2*time.Second
	}
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: e.Namespace, Name: e.Name},
		Client:     e.Client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: e.Identity},
	}
	for ctx.Err() == nil {
		le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock:            lock,
			LeaseDuration:   lease,
			RenewDeadline:   renew,
			RetryPeriod:     retry,
			ReleaseOnCancel: true,
			Name:            e.Name,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(lctx context.Context) {
					e.Log.Info("became leader", "lease", e.Namespace+"/"+e.Name, "identity", e.Identity)
					lead(lctx)
				},
				OnStoppedLeading: func() {
					e.Log.Info("stopped leading", "lease", e.Namespace+"/"+e.Name, "identity", e.Identity)
				},
				OnNewLeader: func(id string) {
					if id != e.Identity {
						e.Log.Info("leader is another replica", "leader", id)
					}
				},
			},
		})
		if err != nil {
			e.Log.Error("leader election misconfigured", "err", err)
			return
		}
		le.Run(ctx) // returns when leadership is lost or ctx ends
	}
}
