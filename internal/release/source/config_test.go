package source

import (
	"errors"
	"reflect"
	"testing"
)

func TestFromEnv(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		want    Config
		wantErr error
	}{
		{
			name: "oci, repository below registry",
			env:  map[string]string{"OCI_REGISTRY": "registry.example", "OCI_REPOSITORY": "kaas/cluster-stacks", "OCI_USERNAME": "u", "OCI_PASSWORD": "p"},
			want: Config{Type: TypeOCI, OCI: OCIConfig{Registry: "registry.example", Repository: "kaas/cluster-stacks", Credentials: Credentials{Username: "u", Password: "p"}}},
		},
		{
			name: "oci, repository repeats the registry",
			env:  map[string]string{"OCI_REGISTRY": "registry.example", "OCI_REPOSITORY": "registry.example/kaas/cluster-stacks", "OCI_ACCESS_TOKEN": "t"},
			want: Config{Type: TypeOCI, OCI: OCIConfig{Registry: "registry.example", Repository: "kaas/cluster-stacks", Credentials: Credentials{Token: "t"}}},
		},
		{
			name: "oci, full reference only, plain http",
			env:  map[string]string{"OCI_REPOSITORY": "http://localhost:5000/stacks"},
			want: Config{Type: TypeOCI, OCI: OCIConfig{Registry: "localhost:5000", Repository: "stacks", PlainHTTP: true}},
		},
		{
			name: "github",
			env:  map[string]string{"GIT_ORG_NAME": "SovereignCloudStack", "GIT_REPOSITORY_NAME": "cluster-stacks", "GIT_ACCESS_TOKEN": "t"},
			want: Config{Type: TypeGitHub, GitHub: GitHubConfig{Owner: "SovereignCloudStack", Repository: "cluster-stacks", Token: "t"}},
		},
		{
			name: "both: oci wins",
			env:  map[string]string{"GIT_ORG_NAME": "o", "GIT_REPOSITORY_NAME": "r", "OCI_REGISTRY": "registry.example", "OCI_REPOSITORY": "kaas/cluster-stacks"},
			want: Config{Type: TypeOCI, OCI: OCIConfig{Registry: "registry.example", Repository: "kaas/cluster-stacks"}},
		},
		{name: "nothing", wantErr: ErrNoSource},
		{name: "github without repository", env: map[string]string{"GIT_ORG_NAME": "o"}, wantErr: ErrInvalidConfig},
		{name: "oci repository without host", env: map[string]string{"OCI_REPOSITORY": "kaas/cluster-stacks"}, wantErr: ErrInvalidConfig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := FromEnv(func(k string) string { return tt.env[k] })
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("got %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}
