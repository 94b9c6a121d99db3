package apply

import (
	"encoding/json"
	"reflect"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// owned returns the union of the field sets (the fieldsV1 trees) that our field manager applied
// to the main resource of live; nil when it owns nothing.
func (a *Applier) owned(live *unstructured.Unstructured) map[string]any {
	var tree map[string]any
	for _, e := range live.GetManagedFields() {
		if e.Manager != a.FieldManager || e.Operation != metav1.ManagedFieldsOperationApply || e.Subresource != "" || e.FieldsV1 == nil {
			continue
		}
		var t map[string]any
		if err := json.Unmarshal(e.FieldsV1.GetRawBytes(), &t); err != nil {
			continue
		}
		tree = mergeTrees(tree, t)
	}
	return tree
}

func mergeTrees(a, b map[string]any) map[string]any {
	if a == nil {
		return b
	}
	for k, bv := range b {
		av, ok := a[k].(map[string]any)
		bm, _ := bv.(map[string]any)
		if ok {
			a[k] = mergeTrees(av, bm)
		} else {
			a[k] = bm
		}
	}
	return a
}

// drifted reports whether a field of desired differs from live and is not owned by us (owned is
// our fieldsV1 subtree for this level, nil when we own nothing here).
func drifted(desired, live map[string]any, owned map[string]any) bool {
	for k, dv := range desired {
		if isEmpty(dv) {
			// The server drops empty and null values; they carry no intent to compare.
			continue
		}
		lv, inLive := live[k]
		childOwned, isOwned := ownedChild(owned, "f:"+k)
		switch dv := dv.(type) {
		case map[string]any:
			lm, ok := lv.(map[string]any)
			if !inLive || !ok {
				if !isOwned {
					return true
				}
				continue
			}
			if drifted(dv, lm, childOwned) {
				return true
			}
		case []any:
			ll, _ := lv.([]any)
			if equalJSON(dv, ll) {
				continue
			}
			if !isOwned || listDrifted(dv, ll, childOwned) {
				return true
			}
		default:
			if equalJSON(dv, lv) {
				continue
			}
			if !isOwned {
				return true
			}
		}
	}
	return false
}

// listDrifted compares a list that differs from live and whose field we own. An atomic list is
// owned as a whole, so owning it means the difference is normalisation. A granular list records
// one entry per item we applied ("k:{keys}" for maps with keys, "v:value" for sets, "i:index"):
// fewer entries than items means someone took or removed items; for keyed items the comparison
// goes on inside the item.
func listDrifted(desired, live []any, owned map[string]any) bool {
	var items []string
	for k := range owned {
		if strings.HasPrefix(k, "k:") || strings.HasPrefix(k, "v:") || strings.HasPrefix(k, "i:") {
			items = append(items, k)
		}
	}
	if len(items) == 0 {
		return false // atomic
	}
	nonEmpty := 0
	for _, d := range desired {
		if !isEmpty(d) {
			nonEmpty++
		}
	}
	if len(items) < nonEmpty {
		return true
	}
	for _, k := range items {
		if !strings.HasPrefix(k, "k:") {
			continue
		}
		var keyFields map[string]any
		if err := json.Unmarshal([]byte(strings.TrimPrefix(k, "k:")), &keyFields); err != nil {
			continue
		}
		d := findItem(desired, keyFields)
		if d == nil {
			continue // an item we applied before; desired unchanged by hash, so it is normalisation
		}
		l := findItem(live, keyFields)
		if l == nil {
			return true
		}
		sub, _ := owned[k].(map[string]any)
		if drifted(d, l, sub) {
			return true
		}
	}
	return false
}

func findItem(list []any, keyFields map[string]any) map[string]any {
	for _, it := range list {
		m, ok := it.(map[string]any)
		if !ok {
			continue
		}
		match := true
		for kf, kv := range keyFields {
			if !equalJSON(m[kf], kv) {
				match = false
				break
			}
		}
		if match {
			return m
		}
	}
	return nil
}

func ownedChild(owned map[string]any, key string) (map[string]any, bool) {
	if owned == nil {
		return nil, false
	}
	v, ok := owned[key]
	if !ok {
		return nil, false
	}
	m, _ := v.(map[string]any)
	return m, true
}

func isEmpty(v any) bool {
	switch t := v.(type) {
	case nil:
		return true
	case map[string]any:
		return len(t) == 0
	case []any:
		return len(t) == 0
	default:
		return false
	}
}

// equalJSON compares two unstructured values after normalising numbers, which arrive as int64,
// float64 or json.Number depending on the decoder.
func equalJSON(a, b any) bool {
	return reflect.DeepEqual(normalize(a), normalize(b))
}

func normalize(v any) any {
	switch t := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, e := range t {
			out[k] = normalize(e)
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = normalize(e)
		}
		return out
	case int:
		return float64(t)
	case int32:
		return float64(t)
	case int64:
		return float64(t)
	case float32:
		return float64(t)
	case json.Number:
		f, err := t.Float64()
		if err != nil {
			return t.String()
		}
		return f
	default:
		return v
	}
}
