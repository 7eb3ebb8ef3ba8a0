// Package graph owns leviathan's model: the typed objects users describe
// (CENs, CINs, containers, CPools) with their desired and observed state, and
// the Store that persists them.
//
// Every change is one Store transaction: a caller reads what it needs and
// writes what it changes inside one Update, so a crash leaves either all of
// a change or none of it. The typed helpers in this package (GetCEN,
// PutContainer, ...) are the only code that knows how objects are encoded
// (core's operation logs, in BucketOplog, are core's own).
//
// Every committed change has a store revision, and a Watch delivers the
// changes after a revision in order, so that API servers sharing an etcd
// store can learn what the others committed (the daemon does not use it
// yet: it runs on the embedded store). The embedded BoltStore
// and the EtcdStore are the only code that imports their databases.
//
// Hosts sharing an EtcdStore each keep a Host record (BucketHosts), a
// leased key while they run (BucketAlive, Store.Announce), and what they
// realized of each CEN and CIN (BucketRealized). A Mirror keeps serving
// reads, from a copy, while the store does not answer.
//
// Threading: a Store (a Mirror too) is safe for concurrent use; a Tx
// belongs to the goroutine running the transaction function and must not
// escape it. A Watcher's channel is read by one goroutine; the commits it
// delivers are shared with other watchers and must not be modified.
package graph

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
)

// Sentinel errors that callers branch on (and frontends map to statuses).
var (
	ErrNotFound = errors.New("not found")
	ErrConflict = errors.New("conflict")
	ErrInvalid  = errors.New("invalid")
	// ErrUnavailable says a service leviathan depends on (the Docker
	// engine, the etcd cluster) does not answer; trying again later may
	// work.
	ErrUnavailable = errors.New("unavailable")
)

// Wiring is how a CEN is realized: nothing, one veth pair, or a bridge.
type Wiring string

// The wiring types, as the leviathan API names them.
const (
	WiringNone   Wiring = ""
	WiringWire   Wiring = "wire"
	WiringBridge Wiring = "bridge"
)

// State is an object's state, in the vocabulary of IM (the
// Infrastructure Manager) where it fits; docs/states.md draws them.
type State string

// The states. A CEN or CIN is pending (described, nothing in the kernel),
// running (being made), configured (made), unconfigured (made, but a
// member is not wired: it does not run, or its wiring failed), deleting
// (being destroyed or deleted) or failed (the last make failed and was
// rolled back; its error says why). A container is running or stopped
// (its namespace does not exist now), or unknown (its runtime does not
// answer). A pool is pending (launching toward its size), configured (at
// size, every container running) or failed. An emulated VM is running
// or off.
const (
	StatePending      State = "pending"
	StateRunning      State = "running"
	StateConfigured   State = "configured"
	StateUnconfigured State = "unconfigured"
	StateStopped      State = "stopped"
	StateOff          State = "off"
	StateFailed       State = "failed"
	StateDeleting     State = "deleting"
	StateUnknown      State = "unknown"
)

// Earlier names of states, as stores written before the vocabulary above
// hold them; Normalize reads them as today's.
const (
	legacyDefined State = "defined"
	legacyMade    State = "made"
	legacyReady   State = "ready"
)

// Normalize returns s in today's vocabulary.
func (s State) Normalize() State {
	switch s {
	case legacyDefined:
		return StatePending
	case legacyMade, legacyReady:
		return StateConfigured
	}
	return s
}

// Member is a container (or emulated VM) on a host.
type Member struct {
	Host      string `json:"host"`
	Container string `json:"container"`
}

// Key is the member's store key.
func (m Member) Key() string { return m.Host + "/" + m.Container }

// CEN is a Container Ethernet Network: the containers sharing one L2 segment.
//
// Members and State describe what the kernel holds once the CEN is made:
// they are committed only after the kernel work they describe succeeded.
type CEN struct {
	ID      string   `json:"id"`
	Members []Member `json:"members"`
	// IfName names the CEN's interface in every member and its bridge in
	// the fabric namespace: the ID itself when it fits, else a short name.
	IfName string `json:"ifname"`
	// Group is the kernel link group marking every link of this CEN.
	Group uint32 `json:"group"`
	State State  `json:"state"`
	Error string `json:"error,omitempty"`
	// Links holds the impairments of members' links, by Member.Key: they
	// stay across re-wiring and restarts, and go when the member leaves.
	Links map[string]*LinkSettings `json:"links,omitempty"`
	// TAPMembers are the members, by Member.Key, that are reached through
	// a TAP on the bridge (emulated VMs): a CEN with one is a bridge.
	TAPMembers []string `json:"tap_members,omitempty"`
	// VNI is the CEN's VXLAN network identifier, used when its members
	// are on several hosts (0 on CENs from before hosts were joined).
	VNI uint32 `json:"vni,omitempty"`
	// Router is the host that routes the made CIN over the CEN: it holds
	// the CEN's bridge, with the gateway, even without members of its own.
	Router string `json:"router,omitempty"`
	// OpHost is the host whose API last changed the CEN: that host did
	// its own part of the change; the others realize theirs from the
	// store.
	OpHost string `json:"op_host,omitempty"`
}

// Hosts returns the hosts that hold a part of the CEN: those of its
// members and its router, in order.
func (c *CEN) Hosts() []string {
	var hs []string
	for _, m := range c.Members {
		hs = append(hs, m.Host)
	}
	if c.Router != "" {
		hs = append(hs, c.Router)
	}
	slices.Sort(hs)
	return slices.Compact(hs)
}

// LinkSettings impair one member's link on a CEN, each direction alike.
type LinkSettings struct {
	State            string  `json:"state,omitempty"` // "up" (the default) or "down"
	DelayMs          int     `json:"delay_ms,omitempty"`
	JitterMs         int     `json:"jitter_ms,omitempty"`
	LossPercent      float64 `json:"loss_percent,omitempty"`
	RateKbit         int     `json:"rate_kbit,omitempty"`
	CorruptPercent   float64 `json:"corrupt_percent,omitempty"`
	DuplicatePercent float64 `json:"duplicate_percent,omitempty"`
}

// HasMember reports whether m is a member of c.
func (c *CEN) HasMember(m Member) bool {
	for _, x := range c.Members {
		if x == m {
			return true
		}
	}
	return false
}

// Container runtimes.
const (
	RuntimeNetns  = "netns"  // a network namespace leviathan created for it
	RuntimeNamed  = "named"  // an existing named network namespace
	RuntimeDocker = "docker" // a Docker container
	RuntimeVPCS   = "vpcs"   // an emulated VM (VPCS), reached through a TAP
)

// Container is a container known on a host, with where its network
// namespace is.
type Container struct {
	Host    string `json:"host"`
	ID      string `json:"id"`
	Runtime string `json:"runtime"`
	// Netns is a path usable with nsenter --net=.
	Netns string `json:"netns"`
	// Owned is true when leviathan created the namespace and so removes it
	// with the container.
	Owned bool   `json:"owned"`
	Tag   string `json:"tag,omitempty"`
	// State says whether it runs, as its runtime last reported ("" for
	// a record from before states: observed again before use).
	State State  `json:"state,omitempty"`
	Error string `json:"error,omitempty"`
	// DefaultRouteCENs are the CENs whose CIN's gateway is its default
	// route (when it has none of its own): a CPool's default_route.
	DefaultRouteCENs []string `json:"default_route_cens,omitempty"`
}

// Running reports whether the container's namespace exists, as last
// observed.
func (c *Container) Running() bool { return c != nil && c.State == StateRunning }

// Member returns the container as a CEN member.
func (c *Container) Member() Member { return Member{Host: c.Host, Container: c.ID} }

// CIN is a Container IP Network: IP addressing laid over CENs.
type CIN struct {
	ID   string   `json:"id"`
	CENs []string `json:"cens"`
	// Prefix is the CIN's network; PrefixGiven says the user chose it
	// (else it came from the pool).
	Prefix       string `json:"prefix"`
	PrefixGiven  bool   `json:"prefix_given,omitempty"`
	DefaultRoute bool   `json:"default_route,omitempty"`
	// Table is the CIN's routing table in the fabric namespace.
	Table int `json:"table"`
	// Subnets gives each CEN its subnet number in the prefix; it stays
	// while the CEN stays in the CIN.
	Subnets map[string]int `json:"subnets"`
	// Addrs holds the members' addresses by AddrKey. An address stays
	// with its member across destroy, make and restarts, and is freed
	// when the member leaves the CEN or the CEN the CIN.
	Addrs map[string]string `json:"addrs"`
	State State             `json:"state"`
	Error string            `json:"error,omitempty"`
	// Router is the host whose fabric routes between the CIN's CENs
	// while it is made (chosen at make: the first host with members).
	Router string `json:"router,omitempty"`
	// OpHost is the host whose API last changed the CIN (see CEN.OpHost).
	OpHost string `json:"op_host,omitempty"`
}

// AddrKey is the key of a member's address on a CEN in CIN.Addrs.
func AddrKey(cenID string, m Member) string { return cenID + "|" + m.Host + "|" + m.Container }

// HasCEN reports whether the CIN spans the CEN.
func (c *CIN) HasCEN(id string) bool {
	for _, x := range c.CENs {
		if x == id {
			return true
		}
	}
	return false
}

// CPool is a pool of Docker containers launched from one image, kept at
// its size, whose containers join CENs (and through them CINs).
type CPool struct {
	ID        string    `json:"id"`
	Image     string    `json:"image"`
	StartWith int       `json:"start_with"`
	CINs      []PoolCIN `json:"cins"`
	// Host is the host whose Docker engine runs the pool's containers
	// ("" in stores from before hosts were joined: the one host).
	Host string `json:"host,omitempty"`
	// Next numbers the pool's next container (its name is ID-N).
	Next  int    `json:"next"`
	State State  `json:"state"`
	Error string `json:"error,omitempty"`
}

// PoolCIN is one entry of a pool's cins: the ID as the file gave it, the
// CEN its containers join, and whether the gateway of the CIN over that
// CEN is their default route.
type PoolCIN struct {
	ID           string `json:"id"`
	CEN          string `json:"cen"`
	DefaultRoute bool   `json:"default_route"`
}

// Bucket names.
const (
	bucketCENs       = "cens"
	bucketContainers = "containers"
	bucketCINs       = "cins"
	bucketCPools     = "cpools"
)

// The buckets of CENs, CINs and containers, whose changes a host's
// realizer follows.
const (
	BucketCENs       = bucketCENs
	BucketCINs       = bucketCINs
	BucketContainers = bucketContainers
)

// BucketOplog holds the objects' operation logs (core's), by object key.
const BucketOplog = "oplog"

// Buckets lists every bucket a Store must hold.
var Buckets = []string{bucketCENs, bucketContainers, bucketCINs, bucketCPools, bucketProjects, bucketVMs, BucketOplog,
	BucketHosts, BucketAlive, BucketRealized, BucketEvents}

var idRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$`)

// ValidateID checks an ID of the given kind ("CEN", "container", "host"):
// letters, digits, '_', '.', '-', 1 to 64 characters, not starting with
// '-' or '.'.
func ValidateID(kind, id string) error {
	if !idRE.MatchString(id) {
		return Errorf(ErrInvalid, "%s ID %s: want 1-64 letters, digits, '_', '.' or '-', not starting with '-' or '.'", kind, Quote(id))
	}
	return nil
}

// RouteWords are the literal path segments the API serves where an
// object's ID could stand (POST /cen/import, /cin/make, ...). A CEN, CIN
// or CPool named so could be created (PUT /cen/import) and then not be
// reached (GET /cen/import is not it), so these are not IDs of objects.
// The rest package's tests derive the list from its routes and check it.
var RouteWords = []string{"import", "make", "destroy", "log", "link", "pcap"}

// ValidateObjectID checks the ID of a new CEN, CIN or CPool: a valid ID
// that is none of RouteWords.
func ValidateObjectID(kind, id string) error {
	if err := ValidateID(kind, id); err != nil {
		return err
	}
	if slices.Contains(RouteWords, id) {
		return Errorf(ErrInvalid, "%s ID %q: reserved: the API has a route of that name", kind, id)
	}
	return nil
}

// GetCEN reads one CEN; ErrNotFound if there is none.
func GetCEN(tx Tx, id string) (*CEN, error) {
	var c CEN
	if err := get(tx, bucketCENs, id, &c); err != nil {
		return nil, fmt.Errorf("CEN %q: %w", id, err)
	}
	c.State = c.State.Normalize()
	return &c, nil
}

// PutCEN writes a CEN.
func PutCEN(tx Tx, c *CEN) error { return put(tx, bucketCENs, c.ID, c) }

// DeleteCEN removes a CEN.
func DeleteCEN(tx Tx, id string) error { return tx.Delete(bucketCENs, id) }

// ListCENs returns every CEN, ordered by ID.
func ListCENs(tx Tx) ([]*CEN, error) {
	cs, err := list[CEN](tx, bucketCENs)
	for _, c := range cs {
		c.State = c.State.Normalize()
	}
	return cs, err
}

// GetCIN reads one CIN; ErrNotFound if there is none.
func GetCIN(tx Tx, id string) (*CIN, error) {
	var c CIN
	if err := get(tx, bucketCINs, id, &c); err != nil {
		return nil, fmt.Errorf("CIN %q: %w", id, err)
	}
	c.State = c.State.Normalize()
	return &c, nil
}

// PutCIN writes a CIN.
func PutCIN(tx Tx, c *CIN) error { return put(tx, bucketCINs, c.ID, c) }

// DeleteCIN removes a CIN.
func DeleteCIN(tx Tx, id string) error { return tx.Delete(bucketCINs, id) }

// ListCINs returns every CIN, ordered by ID.
func ListCINs(tx Tx) ([]*CIN, error) {
	cs, err := list[CIN](tx, bucketCINs)
	for _, c := range cs {
		c.State = c.State.Normalize()
	}
	return cs, err
}

// CINOf returns the CIN that spans a CEN, or nil.
func CINOf(tx Tx, cenID string) (*CIN, error) {
	all, err := ListCINs(tx)
	for _, c := range all {
		if c.HasCEN(cenID) {
			return c, err
		}
	}
	return nil, err
}

// GetCPool reads one pool; ErrNotFound if there is none.
func GetCPool(tx Tx, id string) (*CPool, error) {
	var c CPool
	if err := get(tx, bucketCPools, id, &c); err != nil {
		return nil, fmt.Errorf("CPool %q: %w", id, err)
	}
	c.State = c.State.Normalize()
	return &c, nil
}

// PutCPool writes a pool.
func PutCPool(tx Tx, c *CPool) error { return put(tx, bucketCPools, c.ID, c) }

// DeleteCPool removes a pool.
func DeleteCPool(tx Tx, id string) error { return tx.Delete(bucketCPools, id) }

// ListCPools returns every pool, ordered by ID.
func ListCPools(tx Tx) ([]*CPool, error) {
	cs, err := list[CPool](tx, bucketCPools)
	for _, c := range cs {
		c.State = c.State.Normalize()
	}
	return cs, err
}

// GetContainer reads one container; ErrNotFound if there is none.
func GetContainer(tx Tx, host, id string) (*Container, error) {
	var c Container
	if err := get(tx, bucketContainers, host+"/"+id, &c); err != nil {
		return nil, fmt.Errorf("container %q on host %q: %w", id, host, err)
	}
	return &c, nil
}

// PutContainer writes a container.
func PutContainer(tx Tx, c *Container) error {
	return put(tx, bucketContainers, c.Member().Key(), c)
}

// DeleteContainer removes a container.
func DeleteContainer(tx Tx, host, id string) error {
	return tx.Delete(bucketContainers, host+"/"+id)
}

// DecodeContainer decodes a container as a Commit's change carries it.
func DecodeContainer(b []byte) (*Container, error) {
	var c Container
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("decode container: %w", err)
	}
	return &c, nil
}

// ListContainers returns every container, ordered by host and ID.
func ListContainers(tx Tx) ([]*Container, error) { return list[Container](tx, bucketContainers) }

func get(tx Tx, bucket, key string, v any) error {
	b, err := tx.Get(bucket, key)
	if err != nil {
		return err
	}
	if b == nil {
		return ErrNotFound
	}
	return json.Unmarshal(b, v)
}

func put(tx Tx, bucket, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return tx.Put(bucket, key, b)
}

func list[T any](tx Tx, bucket string) ([]*T, error) {
	var out []*T
	err := tx.ForEach(bucket, func(k string, v []byte) error {
		t := new(T)
		if err := decode(bucket, k, v, t); err != nil {
			return err
		}
		out = append(out, t)
		return nil
	})
	return out, err
}

func decode(bucket, key string, b []byte, v any) error {
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decode %s %q: %w", bucket, key, err)
	}
	return nil
}

// Errorf formats an error of a kind (ErrNotFound, ErrConflict, ErrInvalid)
// whose message is just the formatted text: errors.Is matches the kind,
// and a %w in format is wrapped as usual.
func Errorf(kind error, format string, args ...any) error {
	return &kindError{kind: kind, err: fmt.Errorf(format, args...)}
}

type kindError struct {
	kind error
	err  error
}

func (e *kindError) Error() string   { return e.err.Error() }
func (e *kindError) Unwrap() []error { return []error{e.kind, e.err} }
