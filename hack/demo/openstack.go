package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sort"
	"sync/atomic"
	"text/tabwriter"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	clusterstackv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
	infrav1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/infrastructure/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/openstack/scope"
	"github.com/seed-a720dd5e/clusterstack-operator/test/openstackdouble"
)

// imageSize is the size of the demo's node image file: big enough to be streamed in several
// chunks, small enough to keep the demo quick.
const imageSize = 4 << 20

// cloud is the demo's OpenStack: the Keystone + Glance double, and a web server holding the
// node image files that the releases' node-images.yaml name.
type cloud struct {
	server *openstackdouble.Server
	files  *httptest.Server
	// fetches counts downloads of image files, by whoever makes them.
	fetches atomic.Int32
	// redirect sends every request, whatever its host, to files: the fixture releases name
	// https://images.invalid/..., which does not resolve anywhere.
	redirect *http.Client
}

// startCloud starts the double and the image file server.
//
// Glance's web-download import is switched off, so the operator downloads each image itself
// (through redirect) and uploads it with PUT /v2/images/{id}/file. That is the path every cloud
// supports (web-download is an optional Glance plugin, and the operator also uses the upload path
// whenever a release pins a hash), and it makes the upload counter the demo prints mean "bytes the
// operator sent to Glance".
func startCloud() (*cloud, error) {
	data := make([]byte, imageSize)
	for i := range data {
		data[i] = byte(i * 31 % 251)
	}
	c := &cloud{}
	c.files = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		c.fetches.Add(1)
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = w.Write(data)
	}))
	roots := x509.NewCertPool()
	roots.AddCert(c.files.Certificate())
	target := c.files.Listener.Addr().String()
	c.redirect = &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, target)
		},
		// The connection really goes to the httptest server, so verify its certificate (issued
		// for example.com) instead of the name in the URL.
		TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "example.com", MinVersion: tls.VersionTLS12},
	}}
	var err error
	c.server, err = openstackdouble.New(openstackdouble.WithWebDownload(false), openstackdouble.WithImportHTTPClient(c.redirect))
	if err != nil {
		c.files.Close()
		return nil, fmt.Errorf("starting the OpenStack double: %w", err)
	}
	return c, nil
}

func (c *cloud) Close() {
	c.server.Close()
	c.files.Close()
}

// createProvider creates the credentials Secret for the double and the
// OpenStackClusterStackReleaseTemplate that cs.spec.providerRef names, pointing at that Secret.
func (c *cloud) createProvider(ctx context.Context, cl client.Client, cs *clusterstackv1alpha1.ClusterStack) (secretName string, err error) {
	ref := cs.Spec.ProviderRef
	if ref == nil || ref.Name == "" {
		return "", fmt.Errorf("the sample ClusterStack %s has no spec.providerRef: the demo creates the OpenStackClusterStackReleaseTemplate it names", cs.Name)
	}
	ns := ref.Namespace
	if ns == "" {
		ns = cs.Namespace
	}
	secretName = ref.Name + "-credentials"
	content, cloudName := c.server.CloudsYAML(openstackdouble.CloudsYAMLOptions{})
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: secretName},
		StringData: map[string]string{scope.CloudsYAMLKey: content, scope.CloudNameKey: cloudName},
	}
	if err := cl.Create(ctx, secret); err != nil {
		return "", fmt.Errorf("creating the credentials Secret: %w", err)
	}
	tmpl := &infrav1alpha1.OpenStackClusterStackReleaseTemplate{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: ref.Name},
		Spec: infrav1alpha1.OpenStackClusterStackReleaseTemplateSpec{
			Template: infrav1alpha1.OpenStackClusterStackReleaseTemplateResource{
				Spec: infrav1alpha1.OpenStackClusterStackReleaseSpec{
					IdentityRef: &infrav1alpha1.OpenStackIdentityReference{Kind: "Secret", Name: secretName},
				},
			},
		},
	}
	if err := cl.Create(ctx, tmpl); err != nil {
		return "", fmt.Errorf("creating the OpenStackClusterStackReleaseTemplate: %w", err)
	}
	return secretName, nil
}

// nodeImageProgress prints what changed on the provider objects and node images and reports
// whether every release's provider object and every node image is ready.
func nodeImageProgress(ctx context.Context, c client.Client, namespace string, report func(key, line string)) (bool, string, error) {
	var rels infrav1alpha1.OpenStackClusterStackReleaseList
	if err := c.List(ctx, &rels, client.InNamespace(namespace)); err != nil {
		return false, "", err
	}
	var nirs infrav1alpha1.OpenStackNodeImageReleaseList
	if err := c.List(ctx, &nirs, client.InNamespace(namespace)); err != nil {
		return false, "", err
	}
	done, why := len(rels.Items) > 0 && len(nirs.Items) > 0, "waiting for OpenStackClusterStackReleases and their node images"
	for _, r := range rels.Items {
		rc := readyOf(r.Status.Conditions)
		report("oscsr/"+r.Name, fmt.Sprintf("OpenStackClusterStackRelease %s: Ready=%s %s %s", r.Name, rc.Status, rc.Reason, rc.Message))
		if !r.Status.Ready || r.Status.ObservedGeneration != r.Generation {
			done, why = false, "OpenStackClusterStackRelease "+r.Name+": "+rc.Reason+": "+rc.Message
		}
	}
	for _, n := range nirs.Items {
		rc := readyOf(n.Status.Conditions)
		report("nir/"+n.Name, fmt.Sprintf("OpenStackNodeImageRelease %s: Ready=%s %s image=%s glance=%s", n.Name, rc.Status, rc.Reason, orNone(n.Status.ImageID), orNone(n.Status.ImageStatus)))
		if !n.Status.Ready || n.Status.ObservedGeneration != n.Generation {
			done, why = false, "OpenStackNodeImageRelease "+n.Name+": "+rc.Reason+": "+rc.Message
		}
	}
	return done, why, nil
}

// printOpenStackTables prints the provider objects, the node images, what the double's Glance
// holds and how many OpenStack calls it took.
func (c *cloud) printOpenStackTables(ctx context.Context, cl client.Client, namespace string, out io.Writer) error {
	w := tabwriter.NewWriter(out, 0, 4, 3, ' ', 0)
	var nirs infrav1alpha1.OpenStackNodeImageReleaseList
	if err := cl.List(ctx, &nirs, client.InNamespace(namespace)); err != nil {
		return err
	}
	sort.Slice(nirs.Items, func(i, j int) bool { return nirs.Items[i].Name < nirs.Items[j].Name })
	var rels infrav1alpha1.OpenStackClusterStackReleaseList
	if err := cl.List(ctx, &rels, client.InNamespace(namespace)); err != nil {
		return err
	}
	sort.Slice(rels.Items, func(i, j int) bool { return rels.Items[i].Name < rels.Items[j].Name })

	// A release's images are the node image objects it owns (they may be shared with others).
	fmt.Fprintln(w, "OPENSTACKCLUSTERSTACKRELEASE\tREADY\tREASON\tNODE IMAGE\tIMAGE ID\tGLANCE STATUS")
	for _, r := range rels.Items {
		rc := readyOf(r.Status.Conditions)
		var owned []infrav1alpha1.OpenStackNodeImageRelease
		for _, n := range nirs.Items {
			for _, o := range n.OwnerReferences {
				if o.UID == r.UID {
					owned = append(owned, n)
				}
			}
		}
		if len(owned) == 0 {
			fmt.Fprintf(w, "%s\t%t\t%s\t<none>\t<none>\t<none>\n", r.Name, r.Status.Ready, rc.Reason)
		}
		for _, n := range owned {
			fmt.Fprintf(w, "%s\t%t\t%s\t%s\t%s\t%s\n", r.Name, r.Status.Ready, rc.Reason, n.Name, orNone(n.Status.ImageID), orNone(n.Status.ImageStatus))
		}
	}
	fmt.Fprintln(w)

	fmt.Fprintln(w, "OPENSTACKNODEIMAGERELEASE\tREADY\tREASON\tGLANCE NAME\tIMAGE ID\tGLANCE STATUS\tCREATED BY OPERATOR")
	for _, n := range nirs.Items {
		rc := readyOf(n.Status.Conditions)
		glanceName := ""
		if n.Spec.Image != nil && n.Spec.Image.CreateOpts != nil {
			glanceName = n.Spec.Image.CreateOpts.Name
		}
		fmt.Fprintf(w, "%s\t%t\t%s\t%s\t%s\t%s\t%t\n", n.Name, n.Status.Ready, rc.Reason, orNone(glanceName), orNone(n.Status.ImageID), orNone(n.Status.ImageStatus), n.Status.CreatedImage)
	}
	fmt.Fprintln(w)

	imgs := c.server.Images()
	fmt.Fprintf(w, "GLANCE IMAGE (%s)\tID\tSTATUS\tSIZE\tHASH\n", c.server.URL())
	for _, img := range imgs {
		fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\n", img.Name, img.ID, img.Status, img.Size, shortHash(img))
	}
	if err := w.Flush(); err != nil {
		return err
	}

	distinct := map[string]bool{}
	for _, n := range nirs.Items {
		if n.Spec.Image != nil {
			distinct[n.Spec.Image.URL] = true
		}
	}
	uploads, imports := c.server.Calls(openstackdouble.CallUploadImage), c.server.Calls(openstackdouble.CallImportImage)
	fmt.Fprintln(out)
	fmt.Fprintf(out, "Glance: %d image(s) for %d node image object(s) of %d release(s); %d distinct image file(s) downloaded %d time(s)\n",
		len(imgs), len(nirs.Items), len(rels.Items), len(distinct), c.fetches.Load())
	fmt.Fprintf(out, "Glance uploads (PUT /v2/images/{id}/file): %d, web-download imports: %d (web-download off) -- one upload per distinct image: %s\n",
		uploads, imports, verdict(uploads+imports == len(distinct) && len(imgs) == len(distinct)))
	fmt.Fprintf(out, "Keystone logins (POST /v3/auth/tokens): %d; OpenStack calls in total: %d\n",
		c.server.Calls(openstackdouble.CallAuthTokens), c.server.TotalCalls())
	return nil
}

// shortHash shows the start of the hash Glance computed over the stored bytes.
func shortHash(img openstackdouble.Image) string {
	if img.HashValue == "" {
		return "<none>"
	}
	return img.HashAlgo + ":" + img.HashValue[:min(16, len(img.HashValue))] + "..."
}

func verdict(ok bool) string {
	if ok {
		return "yes"
	}
	return "NO"
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}
