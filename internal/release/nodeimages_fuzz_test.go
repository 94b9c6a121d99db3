package release

import (
	"errors"
	"testing"
)

func FuzzParseNodeImages(f *testing.F) {
	f.Add([]byte("apiVersion: openstack.infrastructure.clusterstack.x-k8s.io/v1alpha1\nopenStackNodeImages:\n  - url: https://example.org/ubuntu.qcow2\n    createOpts:\n      name: ubuntu-capi-image-v1.32.5\n      disk_format: qcow2\n      container_format: bare\n      visibility: private\n"))
	f.Add([]byte("openStackNodeImages:\n  - url: http://x/y\n    createOpts: {name: a, os_hidden: true, tags: [a, b], properties: {k: v}}\n    hash: {algorithm: sha256, value: \"00\"}\n"))
	f.Add([]byte("openStackNodeImages: 3"))
	f.Add([]byte("- ["))
	f.Fuzz(func(t *testing.T, data []byte) {
		imgs, err := ParseNodeImages(data)
		if err != nil {
			if !errors.Is(err, ErrInvalidNodeImages) {
				t.Fatalf("error %v does not wrap ErrInvalidNodeImages", err)
			}
			return
		}
		for _, img := range imgs {
			if img.CreateOpts == nil || img.CreateOpts.Name == "" || img.URL == "" {
				t.Fatalf("accepted an unusable image %+v", img)
			}
		}
	})
}
