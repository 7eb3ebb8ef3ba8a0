package graph

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// EtcdStore is the Store that several hosts share: the graph in an etcd
// cluster under a prefix. A key of a bucket is the etcd key
// PREFIX/BUCKET/KEY; PREFIX/BUCKET/ itself (the empty key, which no
// store accepts) is the bucket's version key, rewritten by every Update
// that writes to the bucket, so that a transaction that listed the
// bucket notices a key added or removed since.
//
// Update is an optimistic transaction: fn reads one snapshot (the etcd
// revision of its first read) and buffers its writes; the writes are then
// committed in one etcd Txn guarded by the mod revisions of everything fn
// read. When another writer got there first, fn runs again, at most
// etcdMaxAttempts times, with jittered backoff bounded by the context.
// An Update writes at most etcd's --max-txn-ops (128 by default) keys,
// counting one version key per bucket written.
type EtcdStore struct {
	cli    *clientv3.Client
	prefix string // "PREFIX/"
	// timeout bounds each request, so that an unreachable cluster is
	// reported (ErrUnavailable) rather than waited for.
	timeout time.Duration
}

const (
	etcdRequestTimeout = 5 * time.Second
	etcdMaxAttempts    = 50
)

// OpenEtcd connects to the etcd cluster at endpoints (host:port) and opens
// the store under prefix. It fails, wrapping ErrUnavailable, when the
// cluster does not answer before ctx ends or the request timeout.
func OpenEtcd(ctx context.Context, endpoints []string, prefix string) (*EtcdStore, error) {
	prefix = strings.Trim(prefix, "/")
	if prefix == "" {
		return nil, Errorf(ErrInvalid, "etcd store: empty prefix")
	}
	if len(endpoints) == 0 {
		return nil, Errorf(ErrInvalid, "etcd store: no endpoints")
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:            endpoints,
		DialTimeout:          etcdRequestTimeout,
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: etcdRequestTimeout,
		Logger:               zap.NewNop(), // failures come back as errors
	})
	if err != nil {
		return nil, fmt.Errorf("etcd store %s: %w", strings.Join(endpoints, ","), err)
	}
	s := &EtcdStore{cli: cli, prefix: prefix + "/", timeout: etcdRequestTimeout}
	if _, err := s.Revision(ctx); err != nil {
		cli.Close()
		if errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, ErrUnavailable) {
			// The open's own deadline passed first: no answer either.
			err = Errorf(ErrUnavailable, "%w", err)
		}
		return nil, fmt.Errorf("etcd store %s: %w", strings.Join(endpoints, ","), err)
	}
	return s, nil
}

// Close implements Store. It ends every watch.
func (s *EtcdStore) Close() error { return s.cli.Close() }

// fail wraps an etcd error: the caller's own cancellation as it is, a
// cluster that does not answer (a request timeout, no connection, no
// leader) as ErrUnavailable.
func (s *EtcdStore) fail(ctx context.Context, what string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("etcd %s: %w", what, ctx.Err())
	}
	code := status.Code(err)
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		code = ee.Code()
	}
	if errors.Is(err, rpctypes.ErrTooManyOps) {
		return Errorf(ErrInvalid, "etcd %s: %w: the change is one transaction; run etcd with a larger --max-txn-ops (it is 128 by default), or make the change in smaller parts", what, err)
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
		code == codes.Unavailable || code == codes.DeadlineExceeded {
		return Errorf(ErrUnavailable, "the store is unavailable: etcd does not answer (%s: %w)", what, err)
	}
	return fmt.Errorf("etcd %s: %w", what, err)
}

// get reads key (a range with WithPrefix) at rev (0: now), bounded by the
// request timeout.
func (s *EtcdStore) get(ctx context.Context, key string, rev int64, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	rctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if rev > 0 {
		opts = append(opts, clientv3.WithRev(rev))
	}
	resp, err := s.cli.Get(rctx, key, opts...)
	if err != nil {
		return nil, s.fail(ctx, "read", err)
	}
	return resp, nil
}

// Revision implements Store.
func (s *EtcdStore) Revision(ctx context.Context) (int64, error) {
	resp, err := s.get(ctx, s.prefix, 0)
	if err != nil {
		return 0, err
	}
	return resp.Header.Revision, nil
}

// View implements Store.
func (s *EtcdStore) View(fn func(Tx) error) error {
	_, err := s.ViewRev(context.Background(), fn)
	return err
}

// ViewRev implements Store: fn reads one snapshot.
func (s *EtcdStore) ViewRev(ctx context.Context, fn func(Tx) error) (int64, error) {
	t := s.newTx(ctx, true)
	if err := fn(t); err != nil {
		return 0, err
	}
	return t.revision()
}

// Update implements Store.
func (s *EtcdStore) Update(fn func(Tx) error) error {
	_, err := s.UpdateRev(context.Background(), fn)
	return err
}

// UpdateRev implements Store.
func (s *EtcdStore) UpdateRev(ctx context.Context, fn func(Tx) error) (int64, error) {
	for attempt := 1; ; attempt++ {
		t := s.newTx(ctx, false)
		if err := fn(t); err != nil {
			return 0, err
		}
		if len(t.writes) == 0 {
			return t.revision()
		}
		rev, ok, err := t.commit()
		if err != nil || ok {
			return rev, err
		}
		if attempt == etcdMaxAttempts {
			return 0, Errorf(ErrConflict, "etcd update: still conflicting after %d attempts", attempt)
		}
		d := time.Millisecond << min(attempt, 7)
		select {
		case <-time.After(d/2 + rand.N(d)):
		case <-ctx.Done():
			return 0, fmt.Errorf("etcd update: %w", ctx.Err())
		}
	}
}

// Watch implements Store. While the cluster is unreachable the watch
// waits, and resumes where it was; a compaction past where it was ends it
// with ErrResync, a member that lost its leader with ErrUnavailable.
//
// The etcd watch starts at fromRevision itself, whose events are dropped:
// etcd answers "compacted" only for a revision below the compaction's,
// yet a compaction at revision R already dropped the deletions made at R.
// Starting one earlier turns that case into ErrResync too.
func (s *EtcdStore) Watch(ctx context.Context, fromRevision int64) *Watcher {
	w := newWatcher()
	fromRevision = max(fromRevision, 0)
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	wch := s.cli.Watch(wctx, s.prefix, clientv3.WithPrefix(), clientv3.WithRev(max(fromRevision, 1)))
	go func() {
		defer cancel()
		for resp := range wch {
			if resp.CompactRevision != 0 {
				w.end(fmt.Errorf("watch from revision %d: compacted up to %d: %w", fromRevision, resp.CompactRevision, ErrResync))
				return
			}
			if err := resp.Err(); err != nil {
				w.end(s.fail(ctx, "watch", err))
				return
			}
			for _, cm := range s.commits(resp.Events) {
				if cm.Revision <= fromRevision {
					continue
				}
				if !w.send(ctx, cm) {
					w.end(ctx.Err())
					return
				}
			}
		}
		if ctx.Err() != nil {
			w.end(ctx.Err())
			return
		}
		w.end(errStoreClosed)
	}()
	return w
}

// Announce implements Store with an etcd lease of ttl (in whole seconds,
// and at least the cluster's minimum, 2s for etcd's default timing), kept
// alive while ctx lasts. When the lease is lost (etcd did not answer for
// a ttl, or it expired meanwhile), the key is put again under a new lease
// as soon as etcd answers, retrying with backoff. When ctx ends the lease
// is revoked, so the key goes at once; if etcd does not answer that, the
// key expires by itself.
func (s *EtcdStore) Announce(ctx context.Context, bucket, key string, value []byte, ttl time.Duration) error {
	if err := checkLeased(bucket, key, ttl); err != nil {
		return err
	}
	secs := int64(math.Ceil(ttl.Seconds()))
	wait := etcdAnnounceBackoff
	for {
		held, err := s.hold(ctx, s.key(bucket, key), value, secs)
		switch {
		case ctx.Err() != nil:
			return nil
		case s.cli.Ctx().Err() != nil:
			return announceErr(bucket, key, errStoreClosed)
		case err != nil && !errors.Is(err, ErrUnavailable):
			return announceErr(bucket, key, err)
		}
		if held {
			wait = etcdAnnounceBackoff
		}
		select {
		case <-time.After(wait/2 + rand.N(wait)):
		case <-ctx.Done():
			return nil
		}
		wait = min(2*wait, etcdAnnounceMaxBackoff)
	}
}

// Announce's retries: from etcdAnnounceBackoff, doubling up to
// etcdAnnounceMaxBackoff (each with jitter), so that a key lost in a
// partition is back soon after it heals.
const (
	etcdAnnounceBackoff    = 50 * time.Millisecond
	etcdAnnounceMaxBackoff = time.Second
)

// hold puts key under a new lease of secs seconds and keeps the lease
// alive until ctx ends (it then revokes it) or the lease is lost. held
// says the key was put.
func (s *EtcdStore) hold(ctx context.Context, key string, value []byte, secs int64) (held bool, err error) {
	rctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	lease, err := s.cli.Grant(rctx, secs)
	if err != nil {
		return false, s.fail(ctx, "grant lease", err)
	}
	if _, err := s.cli.Put(rctx, key, string(value), clientv3.WithLease(lease.ID)); err != nil {
		// The lease, if granted, expires by itself.
		return false, s.fail(ctx, "put leased key", err)
	}
	kctx, kcancel := context.WithCancel(ctx)
	defer kcancel()
	ch, err := s.cli.KeepAlive(kctx, lease.ID)
	if err == nil {
		for range ch {
		}
	}
	if ctx.Err() == nil {
		// Lost: the lease expired, or etcd did not answer within its
		// TTL (it may still hold it: it then expires unrenewed).
		return true, err
	}
	// The key goes now, not a TTL later: tried until the request
	// timeout, as a loaded etcd may take a while.
	rctx, rcancel := context.WithTimeout(context.Background(), s.timeout)
	defer rcancel()
	for {
		_, err := s.cli.Revoke(rctx, lease.ID)
		if err == nil || rctx.Err() != nil || status.Code(err) == codes.NotFound || errors.Is(err, rpctypes.ErrLeaseNotFound) {
			return true, nil
		}
		sleepCtx(rctx, etcdAnnounceBackoff)
	}
}

// commits groups a watch response's events by revision, leaving out the
// version keys.
func (s *EtcdStore) commits(evs []*clientv3.Event) []Commit {
	var out []Commit
	for _, ev := range evs {
		bucket, key, ok := s.split(string(ev.Kv.Key))
		if !ok {
			continue
		}
		ch := Change{Bucket: bucket, Key: key, Value: ev.Kv.Value, Deleted: ev.Type == mvccpb.DELETE}
		if ch.Deleted {
			ch.Value = nil
		} else if ch.Value == nil {
			ch.Value = []byte{}
		}
		if n := len(out); n > 0 && out[n-1].Revision == ev.Kv.ModRevision {
			out[n-1].Changes = append(out[n-1].Changes, ch)
		} else {
			out = append(out, Commit{Revision: ev.Kv.ModRevision, Changes: []Change{ch}})
		}
	}
	for _, cm := range out {
		slices.SortFunc(cm.Changes, func(a, b Change) int {
			if c := strings.Compare(a.Bucket, b.Bucket); c != 0 {
				return c
			}
			return strings.Compare(a.Key, b.Key)
		})
	}
	return out
}

// split parses an etcd key into a bucket and a key; version keys and keys
// of no bucket are not.
func (s *EtcdStore) split(k string) (bucket, key string, ok bool) {
	rest, ok := strings.CutPrefix(k, s.prefix)
	if !ok {
		return "", "", false
	}
	bucket, key, ok = strings.Cut(rest, "/")
	return bucket, key, ok && key != "" && knownBucket(bucket)
}

func knownBucket(name string) bool { return slices.Contains(Buckets, name) }

func (s *EtcdStore) key(bucket, key string) string { return s.prefix + bucket + "/" + key }

// version is the version key of a bucket (and the prefix of its keys).
func (s *EtcdStore) version(bucket string) string { return s.prefix + bucket + "/" }

func (s *EtcdStore) newTx(ctx context.Context, readOnly bool) *etcdTx {
	return &etcdTx{s: s, ctx: ctx, readOnly: readOnly, reads: map[string]int64{}, writes: map[string]etcdWrite{}, listed: map[string]map[string][]byte{}, gets: map[string]int{}}
}

// etcdWrite is a buffered write; value nil is a deletion.
type etcdWrite struct {
	bucket, key string
	value       []byte
}

// etcdTx is one attempt at a transaction.
type etcdTx struct {
	s        *EtcdStore
	ctx      context.Context
	readOnly bool
	rev      int64            // the snapshot read, 0 until the first read
	reads    map[string]int64 // etcd key → mod revision seen (0: absent)
	writes   map[string]etcdWrite
	// listed holds the buckets read whole, by bucket, as etcd key →
	// value at the snapshot: later Gets in them cost no round trip.
	listed map[string]map[string][]byte
	gets   map[string]int // Gets that went to etcd, by bucket
}

// etcdGetsBeforeList is how many keys of one bucket a transaction reads
// one by one; at the next, it reads the bucket whole, once. A call over
// a CEN of hundreds of members then costs a few round trips, not one per
// member.
const etcdGetsBeforeList = 8

// revision returns the snapshot's revision, asking for the current one
// when fn read nothing.
func (t *etcdTx) revision() (int64, error) {
	if t.rev != 0 {
		return t.rev, nil
	}
	return t.s.Revision(t.ctx)
}

func (t *etcdTx) read(key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	resp, err := t.s.get(t.ctx, key, t.rev, opts...)
	if err != nil {
		return nil, err
	}
	if t.rev == 0 {
		t.rev = resp.Header.Revision
	}
	return resp, nil
}

func checkBucket(bucket string) error {
	if !knownBucket(bucket) {
		return fmt.Errorf("store has no bucket %q", bucket)
	}
	return nil
}

func (t *etcdTx) Get(bucket, key string) ([]byte, error) {
	if err := checkBucket(bucket); err != nil {
		return nil, err
	}
	k := t.s.key(bucket, key)
	if w, ok := t.writes[k]; ok {
		return slices.Clone(w.value), nil
	}
	if key == "" {
		return nil, nil
	}
	if _, ok := t.listed[bucket]; !ok && t.gets[bucket] == etcdGetsBeforeList {
		if err := t.forEachPrefix(bucket, "", func(string, []byte) error { return nil }); err != nil {
			return nil, err
		}
	}
	if m, ok := t.listed[bucket]; ok {
		v, ok := m[k]
		switch {
		case !ok:
			return nil, nil
		case v == nil:
			return []byte{}, nil
		}
		return v, nil
	}
	t.gets[bucket]++
	resp, err := t.read(k)
	if err != nil {
		return nil, err
	}
	if len(resp.Kvs) == 0 {
		t.reads[k] = 0
		return nil, nil
	}
	kv := resp.Kvs[0]
	t.reads[k] = kv.ModRevision
	if kv.Value == nil {
		return []byte{}, nil
	}
	return kv.Value, nil
}

func (t *etcdTx) write(bucket, key string, value []byte) error {
	if err := checkBucket(bucket); err != nil {
		return err
	}
	if t.readOnly {
		return errors.New("write in a read-only transaction")
	}
	if key == "" {
		return errors.New("empty key")
	}
	t.writes[t.s.key(bucket, key)] = etcdWrite{bucket: bucket, key: key, value: value}
	return nil
}

func (t *etcdTx) Put(bucket, key string, value []byte) error {
	return t.write(bucket, key, append(make([]byte, 0, len(value)), value...))
}

func (t *etcdTx) Delete(bucket, key string) error { return t.write(bucket, key, nil) }

func (t *etcdTx) ForEach(bucket string, fn func(key string, value []byte) error) error {
	return t.forEachPrefix(bucket, "", fn)
}

// forEachPrefix reads the bucket's keys under prefix in one range. In a
// transaction that may write, the bucket's version key is read too: a key
// added or removed under the prefix since is a conflict.
func (t *etcdTx) forEachPrefix(bucket, prefix string, fn func(key string, value []byte) error) error {
	if err := checkBucket(bucket); err != nil {
		return err
	}
	vk := t.s.version(bucket)
	resp, err := t.read(vk+prefix, clientv3.WithPrefix())
	if err != nil {
		return err
	}
	t.reads[vk] = 0
	kvs := map[string][]byte{}
	for _, kv := range resp.Kvs {
		k := string(kv.Key)
		if k == vk {
			t.reads[vk] = kv.ModRevision
			continue
		}
		kvs[k] = kv.Value
	}
	if prefix == "" {
		t.listed[bucket] = maps.Clone(kvs)
	}
	if prefix != "" && !t.readOnly {
		resp, err := t.read(vk)
		if err != nil {
			return err
		}
		if len(resp.Kvs) > 0 {
			t.reads[vk] = resp.Kvs[0].ModRevision
		}
	}
	for k, w := range t.writes {
		if w.bucket != bucket || !strings.HasPrefix(w.key, prefix) {
			continue
		}
		if w.value == nil {
			delete(kvs, k)
		} else {
			kvs[k] = w.value
		}
	}
	keys := make([]string, 0, len(kvs))
	for k := range kvs {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v := kvs[k]
		if v == nil {
			v = []byte{}
		}
		if err := fn(strings.TrimPrefix(k, vk), v); err != nil {
			return err
		}
	}
	return nil
}

// etcdMaxCompares is how many keys a commit compares one by one; past
// it, keys are checked through their buckets' version keys, as etcd
// refuses a Txn of more than --max-txn-ops (128 by default) compares.
const etcdMaxCompares = 64

// compares guards a commit: every key read keeps the mod revision it was
// read at. A key of a bucket whose version key is compared needs no
// compare of its own; past etcdMaxCompares, every key read is checked
// that way.
func (t *etcdTx) compares() ([]clientv3.Cmp, error) {
	reads := maps.Clone(t.reads)
	for k := range reads {
		if bucket, _, ok := t.s.split(k); ok {
			if _, ok := reads[t.s.version(bucket)]; ok {
				delete(reads, k)
			}
		}
	}
	if len(reads) > etcdMaxCompares {
		for k := range reads {
			bucket, _, ok := t.s.split(k)
			if !ok {
				continue
			}
			vk := t.s.version(bucket)
			if _, ok := reads[vk]; !ok {
				// The version key as of the snapshot fn read.
				resp, err := t.read(vk)
				if err != nil {
					return nil, err
				}
				reads[vk] = 0
				if len(resp.Kvs) > 0 {
					reads[vk] = resp.Kvs[0].ModRevision
				}
			}
			delete(reads, k)
		}
	}
	cmps := make([]clientv3.Cmp, 0, len(reads))
	for k, mr := range reads {
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(k), "=", mr))
	}
	return cmps, nil
}

// commit writes the buffered writes in one Txn guarded by what was read;
// ok false says another writer changed it first.
func (t *etcdTx) commit() (rev int64, ok bool, err error) {
	cmps, err := t.compares()
	if err != nil {
		return 0, false, err
	}
	keys := make([]string, 0, len(t.writes))
	buckets := map[string]bool{}
	for k, w := range t.writes {
		keys = append(keys, k)
		buckets[w.bucket] = true
	}
	slices.Sort(keys)
	ops := make([]clientv3.Op, 0, len(keys)+len(buckets))
	for _, k := range keys {
		if v := t.writes[k].value; v != nil {
			ops = append(ops, clientv3.OpPut(k, string(v)))
		} else {
			ops = append(ops, clientv3.OpDelete(k))
		}
	}
	for b := range buckets {
		ops = append(ops, clientv3.OpPut(t.s.version(b), ""))
	}
	rctx, cancel := context.WithTimeout(t.ctx, t.s.timeout)
	defer cancel()
	resp, err := t.s.cli.Txn(rctx).If(cmps...).Then(ops...).Commit()
	if err != nil {
		return 0, false, t.s.fail(t.ctx, "commit", err)
	}
	return resp.Header.Revision, resp.Succeeded, nil
}

// sleepCtx waits d, or less when ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
