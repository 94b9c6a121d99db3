package testenv

import (
	"path/filepath"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
)

// capoContractLabels are the labels CAPO's CRD kustomization puts on every CRD it ships: Cluster
// API maps a referenced infrastructure apiVersion to the contract it implements through them
// (contract.GetAPIVersion and friends in the topology, ClusterClass and machine controllers), so a
// ClusterClass whose templates live in a CRD without them is refused ("cannot find any versions
// matching contract versions"). clusterctl installs them the same way.
var capoContractLabels = map[string]string{"cluster.x-k8s.io/v1beta1": "v1beta1"}

// orcCRDFiles are the ORC CRDs installed: the kinds cluster stacks render (node images). ORC
// ships one CRD per OpenStack resource; the others would only slow every start down.
var orcCRDFiles = map[string]bool{"openstack.k-orc.cloud_images.yaml": true}

// ProviderCRDs returns the real CRDs of the OpenStack infrastructure provider (CAPO at
// CAPOVersion, every kind, with its contract labels) and of the OpenStack Resource Controller
// (ORC at ORCVersion, the kinds in orcCRDFiles), read from their modules in the module cache
// (downloaded through the module proxy when missing), so that the objects fixtures render and
// tests create are validated by the schemas a real management cluster has. Each CRD serves one
// version, so none needs conversion. Start installs them; a package that builds its own envtest
// passes them as envtest.Environment.CRDs.
func ProviderCRDs() ([]*apiextensionsv1.CustomResourceDefinition, error) {
	capoDir, err := moduleDir(CAPOModule, CAPOVersion)
	if err != nil {
		return nil, err
	}
	orcDir, err := moduleDir(ORCModule, ORCVersion)
	if err != nil {
		return nil, err
	}
	capoCRDs, err := readCRDs(filepath.Join(capoDir, "config", "crd", "bases"), nil)
	if err != nil {
		return nil, err
	}
	for _, crd := range capoCRDs {
		addLabels(crd, capoContractLabels)
	}
	orcCRDs, err := readCRDs(filepath.Join(orcDir, "config", "crd", "bases"), func(name string) bool { return orcCRDFiles[name] })
	if err != nil {
		return nil, err
	}
	return append(capoCRDs, orcCRDs...), nil
}
