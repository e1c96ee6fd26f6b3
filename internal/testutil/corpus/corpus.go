// Package corpus finds the Delta conformance corpus (50 tables written by
// Spark, delta-rs and delta-kernel-rs) that lives outside the repository,
// read-only: tests copy a table to a temp dir before writing to it.
package corpus

import (
	"os"
	"path/filepath"
	"testing"
)

// Env names a directory that overrides the search.
const Env = "SILT_DELTA_CORPUS"

// Find returns the corpus directory, or "" when there is none: $SILT_DELTA_CORPUS,
// else ../shared/delta-conformance next to the repository root (the directory
// holding go.mod, found upwards from the working directory), else
// /work/shared/delta-conformance.
func Find() string {
	if d := os.Getenv(Env); d != "" {
		return d
	}
	var cands []string
	if wd, err := os.Getwd(); err == nil {
		for d := wd; ; d = filepath.Dir(d) {
			if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
				cands = append(cands, filepath.Join(filepath.Dir(d), "shared", "delta-conformance"))
				break
			}
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	cands = append(cands, "/work/shared/delta-conformance")
	for _, c := range cands {
		if _, err := os.Stat(filepath.Join(c, "manifest.json")); err == nil {
			return c
		}
	}
	return ""
}

// Dir returns the corpus directory. Without one the test is skipped, or fails
// when CI is set (CI must run every test).
func Dir(t testing.TB) string {
	t.Helper()
	d := Find()
	if d == "" {
		msg := "Delta conformance corpus not found (set " + Env + ", or put it at ../shared/delta-conformance next to the repository)"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return d
}
