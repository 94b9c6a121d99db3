package chartdeps

import "testing"

// FuzzParseRepositories: the credentials Secret is written by users; parsing must never panic.
func FuzzParseRepositories(f *testing.F) {
	f.Add([]byte("repositories:\n- url: https://charts.example.com\n  username: u\n  password: p\n"))
	f.Add([]byte("repositories: [{url: 'oci://r.example.com/x', token: t}]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, err := ParseRepositories(data)
		if err != nil {
			return
		}
		for _, e := range entries {
			_ = Match(entries, e.URL)
		}
	})
}
