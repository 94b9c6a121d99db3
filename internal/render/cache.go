package render

import (
	"container/list"
	"crypto/sha256"
	"sync"
)

// cacheBytes bounds the answers the cache keeps. An answer is the compact JSON the worker wrote
// (objects are decoded anew for each caller, who may change them): the cluster-class chart of a
// release is some tens of KiB, an addon chart's values and objects about as much, so 4 MiB keeps
// the recent renderings of well over a hundred releases and addons, a small part of the
// manager's memory target (71 MiB at 200 Clusters).
const cacheBytes = 4 << 20

// resultCache keeps the answers of recent renderings by the digest of their request, the least
// recently used dropped first when they exceed max bytes. An answer larger than a quarter of max
// is not kept: it would push out many others.
type resultCache struct {
	mu      sync.Mutex
	max     int64
	size    int64
	order   *list.List // of *cacheEntry, most recently used first
	entries map[[sha256.Size]byte]*list.Element
}

type cacheEntry struct {
	key    [sha256.Size]byte
	answer []byte
}

func newResultCache(maxBytes int64) *resultCache {
	return &resultCache{max: maxBytes, order: list.New(), entries: map[[sha256.Size]byte]*list.Element{}}
}

// get returns the answer kept under key. The caller must not change it.
func (c *resultCache) get(key [sha256.Size]byte) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	if !ok {
		return nil, false
	}
	c.order.MoveToFront(e)
	return e.Value.(*cacheEntry).answer, true
}

// add keeps answer under key; the caller must not change it afterwards.
func (c *resultCache) add(key [sha256.Size]byte, answer []byte) {
	n := int64(len(answer))
	if n > c.max/4 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[key]; ok {
		c.order.MoveToFront(e)
		return
	}
	c.entries[key] = c.order.PushFront(&cacheEntry{key: key, answer: answer})
	c.size += n
	for c.size > c.max {
		last := c.order.Back()
		old := last.Value.(*cacheEntry)
		c.order.Remove(last)
		delete(c.entries, old.key)
		c.size -= int64(len(old.answer))
	}
}
