package pipeline

import (
	"os"
	"testing"
)

func TestMemoryLimitPrecedence(t *testing.T) {
	env := func(v string) func(string) string {
		return func(k string) string {
			if k == "GOMEMLIMIT" {
				return v
			}
			return ""
		}
	}
	files := func(m map[string]string) func(string) ([]byte, error) {
		return func(f string) ([]byte, error) {
			if v, ok := m[f]; ok {
				return []byte(v), nil
			}
			return nil, os.ErrNotExist
		}
	}
	v2, v1 := cgroupFiles[0], cgroupFiles[1]
	for _, tc := range []struct {
		name       string
		configured int64
		env        string
		files      map[string]string
		want       int64
	}{
		{"GOMEMLIMIT wins", 400 << 20, "300MiB", map[string]string{v2: "1073741824\n"}, 0},
		{"configured", 400 << 20, "", map[string]string{v2: "1073741824\n"}, 400 << 20},
		{"cgroup v2", 0, "", map[string]string{v2: "1000000000\n"}, 900000000},
		{"cgroup v2 unlimited", 0, "", map[string]string{v2: "max\n", v1: "1000000000\n"}, 0},
		{"cgroup v1", 0, "", map[string]string{v1: "2000000000\n"}, 1800000000},
		{"cgroup v1 unlimited", 0, "", map[string]string{v1: "9223372036854771712\n"}, 0},
		{"no cgroup", 0, "", nil, 0},
	} {
		got, from := memoryLimit(tc.configured, env(tc.env), files(tc.files))
		if got != tc.want {
			t.Errorf("%s: limit %d (from %q), want %d", tc.name, got, from, tc.want)
		}
	}
}
