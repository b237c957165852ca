package config_test

import (
	"os"
	"strings"
	"testing"

	"github.com/viberq/viberq/config"
)

// TestREADMEListsEverySetting keeps the README's settings table in step with the
// settings the program reads: each one has a row with its default.
func TestREADMEListsEverySetting(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	for _, s := range config.Describe() {
		row := "| `" + s.Name + "` | "
		i := strings.Index(readme, row)
		if i < 0 {
			t.Errorf("README.md has no settings row for %s", s.Name)
			continue
		}
		if s.Default == "" {
			continue
		}
		line := readme[i:]
		line = line[:strings.IndexByte(line, '\n')]
		if !strings.Contains(line, "`"+s.Default+"`") {
			t.Errorf("README.md row of %s does not show its default %q: %s", s.Name, s.Default, line)
		}
	}
}
