package monitor

import (
	"encoding/json"
	"reflect"
	"testing"
)

func TestBusDropsOnlyTheSlowSubscriber(t *testing.T) {
	b := NewBus()
	slow, _ := b.Subscribe(2)
	fast, seq0 := b.Subscribe(100)
	for i := range 10 {
		b.Publish(Event{Action: "x", Data: i})
	}
	select {
	case <-slow.Done:
	default:
		t.Fatal("a subscriber with a full queue was not dropped")
	}
	select {
	case <-fast.Done:
		t.Fatal("a subscriber that keeps up was dropped")
	default:
	}
	for i := range 10 {
		e := <-fast.C
		if e.Seq != seq0+uint64(i)+1 || e.Data != i {
			t.Fatalf("event %d: %+v", i, e)
		}
	}
	if n := b.Subscribers(); n != 1 {
		t.Errorf("%d subscribers, want 1", n)
	}
	fast.Close()
	fast.Close() // twice is harmless
	if n := b.Subscribers(); n != 0 {
		t.Errorf("%d subscribers after Close, want 0", n)
	}
	if n := b.Dropped(); n != 1 {
		t.Errorf("Dropped = %d, want 1: only the slow subscriber (Close is no drop)", n)
	}
	if _, seq := b.Subscribe(1); seq != 10 {
		t.Errorf("Subscribe seq = %d, want 10", seq)
	}
}

func TestEventJSON(t *testing.T) {
	tag := `we"b`
	ms := []Member{{Container: "c1", IP: "10.10.0.10"}, {Container: "c\u00e92\x01\\", IP: "10.10.0.11", Tag: &tag}}
	for _, kind := range []string{"create", "delete"} {
		want, err := json.Marshal(eventMessage{Type: "event", MonitorID: "7\"x", Event: kind, Message: ms})
		if err != nil {
			t.Fatal(err)
		}
		got := eventJSON("7\"x", kind, ms)
		var a, b any
		if err := json.Unmarshal(got, &a); err != nil {
			t.Fatalf("invalid JSON %s: %v", got, err)
		}
		json.Unmarshal(want, &b)
		if !reflect.DeepEqual(a, b) {
			t.Errorf("eventJSON = %s, want %s", got, want)
		}
	}
}
