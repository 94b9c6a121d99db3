package capability

import (
	"bytes"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig/v3"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	infrav1 "github.com/seed-a720dd5e/clusterstack-operator/api/infrastructure/v1alpha1"
)

// Kinds and groups of the rendered objects the check reads.
const (
	clusterGroup        = "cluster.x-k8s.io"
	infraGroup          = "infrastructure.cluster.x-k8s.io"
	orcGroup            = "openstack.k-orc.cloud"
	kindClusterClass    = "ClusterClass"
	kindMachineTemplate = "OpenStackMachineTemplate"
	kindClusterTemplate = "OpenStackClusterTemplate"
	kindImage           = "Image"
)

// Paths of the template fields the check reads, as ClusterClass JSON patches name them.
const (
	pathFlavor         = "/spec/template/spec/flavor"
	pathRootVolume     = "/spec/template/spec/rootVolume"
	pathRootVolumeSize = "/spec/template/spec/rootVolume/sizeGiB"
	pathLB             = "/spec/template/spec/apiServerLoadBalancer"
	pathLBEnabled      = "/spec/template/spec/apiServerLoadBalancer/enabled"
	pathExtNet         = "/spec/template/spec/externalNetwork"
	pathExtNetID       = "/spec/template/spec/externalNetwork/id"
	pathExtNetName     = "/spec/template/spec/externalNetwork/filter/name"
	pathDisableExtNet  = "/spec/template/spec/disableExternalNetwork"
)

// NeedsOf reads what the ClusterClass className needs from the objects a release renders (the
// class, its OpenStack templates, ORC Images) and from its node images (stored says which of
// them are in Glance already). The class's patches are applied as Cluster API applies them to a
// Cluster that sets no variable: enabledIf and value templates see the variables' defaults and
// the builtin cluster.topology.version kubeVersion.
func NeedsOf(objs []*unstructured.Unstructured, className, kubeVersion string, nodeImages []infrav1.NodeImage, stored func(name string) bool) Needs {
	var n Needs
	for _, img := range nodeImages {
		if img.CreateOpts == nil {
			continue
		}
		n.Images = append(n.Images, ImageNeed{Name: img.CreateOpts.Name, DiskFormat: img.CreateOpts.DiskFormat, Source: "node-images.yaml",
			WebDownload: img.URL != "" && img.Hash == nil, Tracked: true, Stored: stored != nil && stored(img.CreateOpts.Name)})
	}
	for _, o := range objs {
		if gvk := o.GroupVersionKind(); gvk.Group == orcGroup && gvk.Kind == kindImage {
			if need, ok := orcImage(o); ok {
				n.Images = append(n.Images, need)
			}
		}
	}

	cc := find(objs, clusterGroup, kindClusterClass, className)
	if cc == nil {
		return n
	}
	c := newClass(cc, kubeVersion)

	// The control plane and every worker class; the first worker class stands for the workers.
	roles := []struct {
		role, template string
		cp             bool
		mdClass        string
	}{{role: RoleControlPlane, template: refName(cc.Object, "spec", "controlPlane", "machineInfrastructure"), cp: true}}
	mds, _, _ := unstructured.NestedSlice(cc.Object, "spec", "workers", "machineDeployments")
	if len(mds) > 0 {
		if md, ok := mds[0].(map[string]any); ok {
			class, _, _ := unstructured.NestedString(md, "class")
			tmpl := refName(md, "template", "infrastructure")
			if tmpl == "" {
				tmpl = refName(md, "infrastructure")
			}
			roles = append(roles, struct {
				role, template string
				cp             bool
				mdClass        string
			}{role: RoleWorkers, template: tmpl, mdClass: class})
		}
	}
	for _, r := range roles {
		mt := find(objs, infraGroup, kindMachineTemplate, r.template)
		if mt == nil {
			continue
		}
		target := func(sel selector) bool {
			return sel.kind == kindMachineTemplate && ((r.cp && sel.controlPlane) || (!r.cp && slices.Contains(sel.mdClasses, r.mdClass)))
		}
		flavor := field{source: kindMachineTemplate + " " + mt.GetName()}
		flavor.value, _, _ = unstructured.NestedFieldNoCopy(mt.Object, "spec", "template", "spec", "flavor")
		rootSize := field{}
		rootSize.value, _, _ = unstructured.NestedFieldNoCopy(mt.Object, "spec", "template", "spec", "rootVolume", "sizeGiB")
		c.apply(target, map[string]*field{pathFlavor: &flavor, pathRootVolumeSize: &rootSize}, map[string]*field{pathRootVolume: &rootSize})
		size := toInt(rootSize.value)
		if name, ok := flavor.value.(string); ok && name != "" {
			n.Flavors = append(n.Flavors, FlavorNeed{Role: r.role, Name: name, Source: flavor.source, RootVolume: size > 0})
		}
		if size > 0 {
			n.RootVolumes = append(n.RootVolumes, VolumeNeed{Role: r.role, SizeGiB: size})
		}
	}

	ct := find(objs, infraGroup, kindClusterTemplate, refName(cc.Object, "spec", "infrastructure"))
	if ct == nil {
		return n
	}
	src := kindClusterTemplate + " " + ct.GetName()
	lb := field{source: src}
	lb.value, _, _ = unstructured.NestedFieldNoCopy(ct.Object, "spec", "template", "spec", "apiServerLoadBalancer", "enabled")
	netID, netName, disable := field{source: src}, field{source: src}, field{source: src}
	netID.value, _, _ = unstructured.NestedFieldNoCopy(ct.Object, "spec", "template", "spec", "externalNetwork", "id")
	netName.value, _, _ = unstructured.NestedFieldNoCopy(ct.Object, "spec", "template", "spec", "externalNetwork", "filter", "name")
	disable.value, _, _ = unstructured.NestedFieldNoCopy(ct.Object, "spec", "template", "spec", "disableExternalNetwork")
	target := func(sel selector) bool { return sel.kind == kindClusterTemplate && sel.infraCluster }
	c.apply(target,
		map[string]*field{pathLBEnabled: &lb, pathExtNetID: &netID, pathExtNetName: &netName, pathDisableExtNet: &disable},
		map[string]*field{pathLB: &lb, pathExtNet: &netID})
	if on, _ := lb.value.(bool); on {
		n.LoadBalancer = lb.source
	}
	if off, _ := disable.value.(bool); !off {
		id, _ := netID.value.(string)
		name, _ := netName.value.(string)
		n.ExternalNetwork = &NetworkNeed{ID: id, Name: name, Source: coalesce(netID.source, netName.source)}
		if id == "" && name == "" {
			n.ExternalNetwork.Source = ""
		}
	}
	return n
}

// field is a template value and where it came from.
type field struct {
	value  any
	source string
}

// selector is the target of one patch definition.
type selector struct {
	kind         string
	controlPlane bool
	infraCluster bool
	mdClasses    []string
}

type class struct {
	patches  []any
	defaults map[string]any
}

func newClass(cc *unstructured.Unstructured, kubeVersion string) *class {
	c := &class{defaults: map[string]any{"builtin": map[string]any{"cluster": map[string]any{"topology": map[string]any{"version": kubeVersion}}}}}
	vars, _, _ := unstructured.NestedSlice(cc.Object, "spec", "variables")
	for _, v := range vars {
		vm, ok := v.(map[string]any)
		if !ok {
			continue
		}
		name, _, _ := unstructured.NestedString(vm, "name")
		if def, ok, _ := unstructured.NestedFieldNoCopy(vm, "schema", "openAPIV3Schema", "default"); ok && name != "" {
			c.defaults[name] = def
		}
	}
	c.patches, _, _ = unstructured.NestedSlice(cc.Object, "spec", "patches")
	return c
}

// apply runs the class's inline patches on the fields of one template, in order: exact paths
// set a field, parent paths (add of a whole object) set the field below them that is named in
// the object. Patches whose value cannot be known without a Cluster (a template that fails on
// the defaults, an unset variable) leave the field as it is.
func (c *class) apply(target func(selector) bool, exact, parent map[string]*field) {
	for _, p := range c.patches {
		pm, ok := p.(map[string]any)
		if !ok {
			continue
		}
		if _, external := pm["external"]; external {
			continue
		}
		name, _, _ := unstructured.NestedString(pm, "name")
		if cond, ok, _ := unstructured.NestedString(pm, "enabledIf"); ok && cond != "" {
			out, err := c.render(cond)
			if err != nil || strings.TrimSpace(out) != "true" {
				continue
			}
		}
		defs, _, _ := unstructured.NestedSlice(pm, "definitions")
		for _, d := range defs {
			dm, ok := d.(map[string]any)
			if !ok || !target(selectorOf(dm)) {
				continue
			}
			ops, _, _ := unstructured.NestedSlice(dm, "jsonPatches")
			for _, op := range ops {
				om, ok := op.(map[string]any)
				if !ok {
					continue
				}
				path, _, _ := unstructured.NestedString(om, "path")
				value, source, ok := c.value(om, name)
				if !ok {
					continue
				}
				if f := exact[path]; f != nil {
					f.value, f.source = value, source
				}
				if f := parent[path]; f != nil {
					c.setFromObject(path, value, source, exact)
				}
			}
		}
	}
}

// setFromObject sets the exact fields below path from an object value, e.g. an added
// rootVolume {sizeGiB: 25} or externalNetwork {id: ...}.
func (c *class) setFromObject(path string, value any, source string, exact map[string]*field) {
	obj, ok := value.(map[string]any)
	if !ok {
		return
	}
	for p, f := range exact {
		rest, ok := strings.CutPrefix(p, path+"/")
		if !ok {
			continue
		}
		if v, found, _ := unstructured.NestedFieldNoCopy(obj, strings.Split(rest, "/")...); found {
			f.value, f.source = v, source
		} else if p == pathExtNetID || p == pathExtNetName {
			// A new externalNetwork object replaces the selection as a whole.
			f.value, f.source = nil, source
		}
	}
}

// value is what one JSON patch writes, with its source for messages.
func (c *class) value(op map[string]any, patch string) (any, string, bool) {
	if v, ok := op["value"]; ok {
		return v, "patch " + patch, true
	}
	if variable, ok, _ := unstructured.NestedString(op, "valueFrom", "variable"); ok {
		v, found := c.defaults[variable]
		return v, "variable " + variable, found
	}
	if tmpl, ok, _ := unstructured.NestedString(op, "valueFrom", "template"); ok {
		out, err := c.render(tmpl)
		if err != nil {
			return nil, "", false
		}
		var v any
		if err := yaml.Unmarshal([]byte(out), &v); err != nil {
			return nil, "", false
		}
		return v, "patch " + patch, true
	}
	return nil, "", false
}

// render evaluates a patch template the way Cluster API does (Go templates with sprig's
// hermetic functions), on the variables' defaults.
func (c *class) render(text string) (string, error) {
	t, err := template.New("patch").Funcs(sprig.HermeticTxtFuncMap()).Parse(text)
	if err != nil {
		return "", fmt.Errorf("parsing patch template: %w", err)
	}
	var b bytes.Buffer
	if err := t.Execute(&b, c.defaults); err != nil {
		return "", fmt.Errorf("executing patch template: %w", err)
	}
	return b.String(), nil
}

func selectorOf(def map[string]any) selector {
	var s selector
	s.kind, _, _ = unstructured.NestedString(def, "selector", "kind")
	s.controlPlane, _, _ = unstructured.NestedBool(def, "selector", "matchResources", "controlPlane")
	s.infraCluster, _, _ = unstructured.NestedBool(def, "selector", "matchResources", "infrastructureCluster")
	s.mdClasses, _, _ = unstructured.NestedStringSlice(def, "selector", "matchResources", "machineDeploymentClass", "names")
	return s
}

// orcImage reads an ORC Image that the release asks ORC to create (managed, with content).
func orcImage(o *unstructured.Unstructured) (ImageNeed, bool) {
	content, ok, _ := unstructured.NestedMap(o.Object, "spec", "resource", "content")
	if !ok {
		return ImageNeed{}, false
	}
	name, _, _ := unstructured.NestedString(o.Object, "spec", "resource", "name")
	format, _, _ := unstructured.NestedString(content, "diskFormat")
	url, _, _ := unstructured.NestedString(content, "download", "url")
	_, hashed, _ := unstructured.NestedMap(content, "download", "hash")
	return ImageNeed{Name: coalesce(name, o.GetName()), DiskFormat: format, Source: "ORC Image " + o.GetName(), WebDownload: url != "" && !hashed}, true
}

// refName is the name of a ClusterClass reference: templateRef (v1beta2) or ref (v1beta1).
func refName(obj map[string]any, path ...string) string {
	for _, key := range []string{"templateRef", "ref"} {
		if n, ok, _ := unstructured.NestedString(obj, append(slices.Clone(path), key, "name")...); ok {
			return n
		}
	}
	return ""
}

func find(objs []*unstructured.Unstructured, group, kind, name string) *unstructured.Unstructured {
	for _, o := range objs {
		if gvk := o.GroupVersionKind(); gvk.Group == group && gvk.Kind == kind && o.GetName() == name {
			return o
		}
	}
	return nil
}

func toInt(v any) int {
	switch n := v.(type) {
	case int64:
		return int(n)
	case int:
		return n
	case float64:
		return int(n)
	case string:
		i, _ := strconv.Atoi(n)
		return i
	}
	return 0
}
