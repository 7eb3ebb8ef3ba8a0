package core

import (
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

// Overlapping key sets taken in any order never deadlock, and a key is
// held by one holder at a time.
func TestKeyedLocks(t *testing.T) {
	var k keyedLocks
	keys := []string{"cen:a", "cen:b", "cen:c", "ctr:h/x", "ctr:h/y"}
	holders := make(map[string]int)
	var mu sync.Mutex
	var wg sync.WaitGroup
	done := make(chan struct{})
	for g := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 1))
			for range 200 {
				var set []string
				for _, key := range keys {
					if rng.IntN(2) == 0 {
						set = append(set, key)
					}
				}
				rng.Shuffle(len(set), func(i, j int) { set[i], set[j] = set[j], set[i] })
				set = append(set, set...) // repeats are harmless
				unlock := k.lock(set...)
				mu.Lock()
				for _, key := range set {
					holders[key]++
				}
				for _, key := range set {
					if holders[key] != countOf(set, key) {
						t.Errorf("%s held by two holders", key)
					}
				}
				mu.Unlock()
				mu.Lock()
				for _, key := range set {
					holders[key]--
				}
				mu.Unlock()
				unlock()
			}
		}()
	}
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("deadlock")
	}
	if len(k.m) != 0 {
		t.Errorf("%d lock entries left after every holder released", len(k.m))
	}
}

func countOf(set []string, key string) int {
	n := 0
	for _, s := range set {
		if s == key {
			n++
		}
	}
	return n
}

func TestTryLock(t *testing.T) {
	var k keyedLocks
	unlock := k.lock("a")
	if _, ok := k.tryLock("a"); ok {
		t.Fatal("tryLock took a held lock")
	}
	u2, ok := k.tryLock("b")
	if !ok {
		t.Fatal("tryLock did not take a free lock")
	}
	unlock()
	u3, ok := k.tryLock("a")
	if !ok {
		t.Fatal("tryLock did not take a released lock")
	}
	u2()
	u3()
	if len(k.m) != 0 {
		t.Errorf("locks left behind: %v", k.m)
	}
}
