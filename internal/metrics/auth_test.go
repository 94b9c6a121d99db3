package metrics

import (
	"fmt"
	"net/http"
	"testing"
	"time"
)

func TestBearerToken(t *testing.T) {
	for _, tc := range []struct {
		header string
		want   string
		ok     bool
	}{
		{header: "Bearer abc", want: "abc", ok: true},
		{header: "bearer  abc ", want: "abc", ok: true},
		{header: "Basic abc"},
		{header: "Bearer"},
		{header: "Bearer  "},
		{header: ""},
	} {
		req, err := http.NewRequest(http.MethodGet, "/metrics", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", tc.header)
		got, ok := bearerToken(req)
		if got != tc.want || ok != tc.ok {
			t.Errorf("bearerToken(%q) = %q, %t; want %q, %t", tc.header, got, ok, tc.want, tc.ok)
		}
	}
}

// TestAnswersBounded checks that answers expire and that a cache full of unexpired answers keeps
// no more: tokens sprayed at the endpoint do not grow the manager's memory.
func TestAnswersBounded(t *testing.T) {
	now := time.Now()
	var c answers[bool]
	c.put("a", true, now, time.Minute)
	if v, ok := c.get("a", now.Add(59*time.Second)); !ok || !v {
		t.Errorf("an answer within its TTL: %t, %t; want true, true", v, ok)
	}
	if _, ok := c.get("a", now.Add(time.Minute)); ok {
		t.Error("an answer past its TTL is still answered")
	}
	for i := range 2 * maxCached {
		c.put(fmt.Sprint(i), true, now, time.Minute)
	}
	if len(c.entries) != maxCached {
		t.Errorf("%d answers kept, want at most %d", len(c.entries), maxCached)
	}
	// Once the answers expired, new ones replace them.
	later := now.Add(2 * time.Minute)
	c.put("new", true, later, time.Minute)
	if _, ok := c.get("new", later); !ok || len(c.entries) != 1 {
		t.Errorf("after expiry: new answer kept %t, %d answers; want true, 1", ok, len(c.entries))
	}
}
