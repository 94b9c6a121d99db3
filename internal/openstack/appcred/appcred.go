package appcred

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/applicationcredentials"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	infrav1 "github.com/seed-a720dd5e/clusterstack-operator/api/infrastructure/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/openstack/clients"
)

// namePrefix marks the operator's credentials; the Cluster's UID makes the names of two Clusters
// (also of a Cluster deleted and re-created under the same name) distinct.
const namePrefix = "cso-"

// Prefix is the name prefix of every credential of the Cluster with this UID.
func Prefix(clusterUID types.UID) string { return namePrefix + string(clusterUID) + "-" }

// Name is the name of the Cluster's credential number serial.
func Name(clusterUID types.UID, serial int64) string {
	return Prefix(clusterUID) + strconv.FormatInt(serial, 10)
}

// Minted is a credential just created, with the secret Keystone shows only now.
type Minted struct {
	Ref    infrav1.ApplicationCredentialRef
	Secret string
}

// Create creates a restricted credential (it cannot create or delete credentials itself) with
// only roles, expiring at expiresAt.
func Create(ctx context.Context, c clients.ApplicationCredentialClient, name, description string, roles []string, expiresAt time.Time) (*Minted, error) {
	opts := applicationcredentials.CreateOpts{Name: name, Description: description, Unrestricted: false, ExpiresAt: &expiresAt}
	for _, r := range roles {
		opts.Roles = append(opts.Roles, applicationcredentials.Role{Name: r})
	}
	ac, err := c.CreateApplicationCredential(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("creating application credential %q: %w", name, err)
	}
	if ac.Secret == "" || ac.ID == "" {
		return nil, fmt.Errorf("creating application credential %q: Keystone returned no ID or secret", name)
	}
	got := make([]string, 0, len(ac.Roles))
	for _, r := range ac.Roles {
		got = append(got, r.Name)
	}
	slices.Sort(got)
	exp := ac.ExpiresAt
	if exp.IsZero() {
		exp = expiresAt
	}
	return &Minted{Ref: infrav1.ApplicationCredentialRef{ID: ac.ID, Name: ac.Name, ExpiresAt: metav1.NewTime(exp.UTC()), Roles: got}, Secret: ac.Secret}, nil
}

// Revoke deletes the credential with this ID; one that is already gone is revoked.
func Revoke(ctx context.Context, c clients.ApplicationCredentialClient, id string) error {
	if err := c.DeleteApplicationCredential(ctx, id); err != nil && clients.Classify(err).Kind != clients.KindNotFound {
		return fmt.Errorf("revoking application credential %s: %w", id, err)
	}
	return nil
}

// Sweep revokes every credential of the user whose name has prefix and whose ID is not in keep:
// those a crash left between their creation and the record of them, and, with nothing kept, all
// of a Cluster's. It returns how many it revoked.
func Sweep(ctx context.Context, c clients.ApplicationCredentialClient, prefix string, keep ...string) (int, error) {
	list, err := c.ListApplicationCredentials(ctx)
	if err != nil {
		return 0, fmt.Errorf("listing application credentials: %w", err)
	}
	n := 0
	for _, ac := range list {
		if !strings.HasPrefix(ac.Name, prefix) || slices.Contains(keep, ac.ID) {
			continue
		}
		if err := Revoke(ctx, c, ac.ID); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}
