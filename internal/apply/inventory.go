package apply

import (
	clusterstackv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
)

// maxErrorLength is the API's bound on Resource.Error.
const maxErrorLength = 10240

// ToResources converts the new inventory of result (result.Applied) to the API's inventory
// entries, with each object's status and error.
func ToResources(result Result) []clusterstackv1alpha1.Resource {
	if len(result.Applied) == 0 {
		return nil
	}
	out := make([]clusterstackv1alpha1.Resource, 0, len(result.Applied))
	for _, ref := range result.Applied {
		r := clusterstackv1alpha1.Resource{
			Group: ref.Group, Version: ref.Version, Kind: ref.Kind, Namespace: ref.Namespace, Name: ref.Name,
			Status: clusterstackv1alpha1.ResourceStatusSynced,
		}
		if err, ok := result.Failed[ref]; ok {
			r.Status = clusterstackv1alpha1.ResourceStatusNotSynced
			r.Error = err.Error()
			if len(r.Error) > maxErrorLength {
				r.Error = r.Error[:maxErrorLength-3] + "..."
			}
		}
		out = append(out, r)
	}
	return out
}

// FromResources converts the API's inventory entries back to Refs, in order.
func FromResources(resources []clusterstackv1alpha1.Resource) []Ref {
	if len(resources) == 0 {
		return nil
	}
	out := make([]Ref, len(resources))
	for i, r := range resources {
		out[i] = Ref{Group: r.Group, Version: r.Version, Kind: r.Kind, Namespace: r.Namespace, Name: r.Name}
	}
	return out
}
