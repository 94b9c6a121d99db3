package appcred

import (
	"fmt"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/seed-a720dd5e/clusterstack-operator/internal/openstack/scope"
)

// Keys and mount points of the workload Secrets, as the SCS cluster stacks read them: the scs2
// stacks mount Secret kube-system/clouds-yaml at /etc/openstack and read clouds.yaml (cloud
// `openstack`); the earlier scs stacks give the cloud controller manager and Cinder CSI Secret
// kube-system/cloud-config, mounted at /etc/config, with the INI file cloud.conf (and yawol
// cloudprovider.conf), as the SCS openstack-csp-helper chart writes it.
const (
	CloudsYAMLKey         = "clouds.yaml"
	CloudConfKey          = "cloud.conf"
	CloudProviderConfKey  = "cloudprovider.conf"
	CACertKey             = "cacert"
	CloudName             = "openstack"
	cloudsYAMLMountPath   = "/etc/openstack"
	cloudConfigMountPath  = "/etc/config"
	applicationCredential = "v3applicationcredential"
)

// Files are the contents of the workload Secrets for one credential.
type Files struct {
	// CloudsYAML is Secret clouds-yaml's clouds.yaml.
	CloudsYAML []byte
	// CloudConf is Secret cloud-config's cloud.conf (and cloudprovider.conf).
	CloudConf []byte
	// CACert is the cloud's CA (both Secrets' cacert), nil when the identityRef Secret has none.
	CACert []byte
}

// Render writes the files that log in with the application credential id/secret to cloud. They
// hold nothing of the identityRef Secret but the cloud's address, region, interface and CA.
func Render(cloud scope.Cloud, id, secret string) (Files, error) {
	entry := map[string]any{
		"auth": map[string]any{
			"auth_url":                      cloud.AuthURL,
			"application_credential_id":     id,
			"application_credential_secret": secret,
		},
		"auth_type":            applicationCredential,
		"interface":            cloud.Interface,
		"identity_api_version": 3,
	}
	if cloud.Region != "" {
		entry["region_name"] = cloud.Region
	}
	if len(cloud.CACert) > 0 {
		entry["cacert"] = cloudsYAMLMountPath + "/" + CACertKey
	}
	if cloud.Insecure {
		entry["verify"] = false
	}
	cy, err := yaml.Marshal(map[string]any{"clouds": map[string]any{CloudName: entry}})
	if err != nil {
		return Files{}, fmt.Errorf("rendering clouds.yaml: %w", err)
	}

	var b strings.Builder
	b.WriteString("[Global]\n")
	ini := func(k, v string) { fmt.Fprintf(&b, "%s=%s\n", k, iniQuote(v)) }
	ini("auth-url", cloud.AuthURL)
	ini("application-credential-id", id)
	ini("application-credential-secret", secret)
	if cloud.Region != "" {
		ini("region", cloud.Region)
	}
	if cloud.Interface != "" {
		ini("interface", cloud.Interface)
	}
	if len(cloud.CACert) > 0 {
		ini("ca-file", cloudConfigMountPath+"/"+CACertKey)
	}
	if cloud.Insecure {
		b.WriteString("tls-insecure=true\n")
	}
	// The load balancer settings of the csp-helper chart, which stacks reading cloud.conf expect.
	b.WriteString("\n[LoadBalancer]\nmanage-security-groups=true\nenable-ingress-hostname=true\ncreate-monitor=true\n")
	return Files{CloudsYAML: cy, CloudConf: []byte(b.String()), CACert: cloud.CACert}, nil
}

// iniQuote quotes a value for gcfg, the INI reader of the cloud controller manager and Cinder
// CSI: double quotes with backslash escapes, so that ';', '#' and spaces survive.
func iniQuote(v string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	return `"` + r.Replace(v) + `"`
}
