package render

import (
	"bytes"
	"crypto/sha256"
	"testing"
)

func TestResultCache(t *testing.T) {
	key := func(s string) [sha256.Size]byte { return sha256.Sum256([]byte(s)) }
	answer := func(n int) []byte { return bytes.Repeat([]byte("x"), n) }
	c := newResultCache(100)
	c.add(key("a"), answer(20))
	c.add(key("b"), answer(20))
	c.add(key("c"), answer(20))
	if _, ok := c.get(key("a")); !ok { // a is now the most recently used
		t.Fatal("a is not kept")
	}
	c.add(key("d"), answer(20))
	c.add(key("e"), answer(20)) // 100 bytes: all fit
	c.add(key("f"), answer(20)) // over: b, the least recently used, goes
	for k, want := range map[string]bool{"a": true, "b": false, "c": true, "d": true, "e": true, "f": true} {
		if _, ok := c.get(key(k)); ok != want {
			t.Errorf("%s kept = %v, want %v", k, ok, want)
		}
	}
	if c.size != 100 {
		t.Errorf("size = %d, want 100", c.size)
	}
	c.add(key("big"), answer(26)) // over a quarter of the cache: not kept, nothing pushed out
	if _, ok := c.get(key("big")); ok {
		t.Error("an answer over a quarter of the cache was kept")
	}
	if _, ok := c.get(key("c")); !ok || c.size != 100 {
		t.Errorf("a refused answer pushed others out: size %d", c.size)
	}
	c.add(key("a"), answer(20)) // again: counted once
	if c.size != 100 || c.order.Len() != 5 {
		t.Errorf("adding a kept key again: size %d, %d entries", c.size, c.order.Len())
	}
	if got, _ := c.get(key("e")); !bytes.Equal(got, answer(20)) {
		t.Errorf("e = %q", got)
	}
}
