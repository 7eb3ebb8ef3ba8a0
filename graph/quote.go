package graph

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Messages quote what a client sent (an ID, a value) so that it can see
// what was refused, but never all of it: a request of 8 MiB must not be
// answered with a message of 8 MiB, nor a list of 500,000 unknown IDs
// with all of them. Every message that quotes client input goes through
// these.
const (
	// MaxQuoted is how many bytes of one value a message quotes.
	MaxQuoted = 128
	// MaxListed is how many items of a list a message names.
	MaxListed = 10
)

// Clip returns s, or its first MaxQuoted bytes (cut on a rune boundary)
// followed by "..." and its length.
func Clip(s string) string {
	if len(s) <= MaxQuoted {
		return s
	}
	n := MaxQuoted
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return fmt.Sprintf("%s... (%d bytes)", s[:n], len(s))
}

// Quote is %q of s, clipped like Clip.
func Quote(s string) string {
	if len(s) <= MaxQuoted {
		return strconv.Quote(s)
	}
	c := Clip(s)
	cut := strings.LastIndex(c, "... (")
	return strconv.Quote(c[:cut]) + c[cut:]
}

// JoinErrors is errors.Join whose message names the first MaxListed
// errors and how many more there are; errors.Is and errors.As still see
// them all.
func JoinErrors(errs ...error) error {
	var nonNil []error
	for _, err := range errs {
		if err != nil {
			nonNil = append(nonNil, err)
		}
	}
	if len(nonNil) == 0 {
		return nil
	}
	return joinedErrors(nonNil)
}

type joinedErrors []error

func (e joinedErrors) Error() string {
	var b strings.Builder
	for i, err := range e {
		if i == MaxListed {
			fmt.Fprintf(&b, "\nand %d more", len(e)-MaxListed)
			break
		}
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(err.Error())
	}
	return b.String()
}

func (e joinedErrors) Unwrap() []error { return e }

// QuoteList quotes the first MaxListed items of ss, comma-separated,
// and says how many more there are.
func QuoteList(ss []string) string {
	var b strings.Builder
	for i, s := range ss {
		if i == MaxListed {
			fmt.Fprintf(&b, " and %d more", len(ss)-MaxListed)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(Quote(s))
	}
	return b.String()
}
