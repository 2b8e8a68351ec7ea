package main

import (
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/porttrace/porttrace/internal/event"
	"github.com/porttrace/porttrace/internal/frame"
)

// TestJSONDocumented: the JSON fields are documented in one place,
// docs/fleet.md's "JSON output" (issue 23): every field `trace --json`
// prints and every field a `top --json` frame adds to its summary is
// named there, and the source files it sends readers to for the
// summary's fields declare them.
func TestJSONDocumented(t *testing.T) {
	b, err := os.ReadFile("../../docs/fleet.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	start := strings.Index(doc, "## JSON output")
	if start < 0 {
		t.Fatal(`docs/fleet.md has no "JSON output" section`)
	}
	doc = doc[start:]
	if end := strings.Index(doc[3:], "\n## "); end >= 0 {
		doc = doc[:end+3]
	}
	named := map[string]bool{}
	for _, m := range regexp.MustCompile("`([a-z0-9_./]+)`").FindAllStringSubmatch(doc, -1) {
		named[m[1]] = true
	}
	for _, typ := range []reflect.Type{reflect.TypeFor[event.JSON](), reflect.TypeFor[workloadJSON](), reflect.TypeFor[frame.Frame]()} {
		for f := range typ.Fields() {
			key, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if key == "" || key == "-" {
				continue
			}
			if !named[key] {
				t.Errorf("%s's JSON field %q is not named in docs/fleet.md's JSON output", typ, key)
			}
		}
	}
	files := 0
	for name := range named {
		if strings.HasSuffix(name, ".go") {
			files++
			src, err := os.ReadFile("../../" + name)
			if err != nil || !strings.Contains(string(src), "json:\"") {
				t.Errorf("docs/fleet.md's JSON output sends readers to %s, which declares no JSON field (%v)", name, err)
			}
		}
	}
	if files == 0 {
		t.Error("docs/fleet.md's JSON output names no source file for the summary's fields")
	}
}
