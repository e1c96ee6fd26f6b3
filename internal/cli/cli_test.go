package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/silt-dev/silt/internal/testutil/corpus"
)

func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestHelpExplainsEveryCommand(t *testing.T) {
	code, out, _ := run(t, "--help")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, cmd := range []string{"run", "demo", "check", "config", "table", "slot"} {
		found := false
		for _, line := range strings.Split(out, "\n") {
			f := strings.Fields(line)
			if len(f) > 2 && f[0] == cmd {
				found = true
			}
		}
		if !found {
			t.Errorf("--help has no one-sentence line for %q:\n%s", cmd, out)
		}
	}
}

func TestRunWithoutConfig(t *testing.T) {
	code, _, errOut := run(t, "run")
	if code != 2 || !strings.Contains(errOut, "--config is required") || strings.Count(errOut, "\n") != 1 {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
}

func TestConfigValidateListsProblems(t *testing.T) {
	p := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(p, []byte("stream:\n  shards: 0\n  durability: maybe\nlog:\n  level: loud\n"), 0o644)
	code, _, errOut := run(t, "config", "validate", "--config", p)
	if code != 2 {
		t.Fatalf("exit %d", code)
	}
	for _, w := range []string{"source.dsn", "stream.durability", "log.level"} {
		if !strings.Contains(errOut, w) {
			t.Errorf("stderr does not list %s:\n%s", w, errOut)
		}
	}
}

func TestConfigExampleIsValid(t *testing.T) {
	code, out, _ := run(t, "config", "example")
	if code != 0 {
		t.Fatal(code)
	}
	p := filepath.Join(t.TempDir(), "silt.yaml")
	os.WriteFile(p, []byte(out), 0o644)
	code, out, errOut := run(t, "config", "validate", "--config", p)
	if code != 0 || !strings.Contains(out, "valid") {
		t.Fatalf("exit %d: %s %s", code, out, errOut)
	}
}

func TestRunUnreachableIsOneLine(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "silt.yaml")
	os.WriteFile(p, []byte("source:\n  dsn: postgres://postgres@127.0.0.1:1/x?sslmode=disable\nstream:\n  dir: "+dir+"/s\nlake:\n  path: "+dir+"/l\n"), 0o644)
	code, _, errOut := run(t, "run", "--config", p)
	if code == 0 || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, "cannot connect") || !strings.Contains(errOut, "source.dsn") {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
}

func TestTableCommandsOnCorpus(t *testing.T) {
	src := filepath.Join(corpus.Dir(t), "dat/basic_append/delta")
	code, out, errOut := run(t, "table", "describe", src)
	if code != 0 || !strings.Contains(out, "version") || !strings.Contains(out, "schema:") {
		t.Fatalf("describe: exit %d\n%s%s", code, out, errOut)
	}
	code, out, _ = run(t, "table", "history", src)
	if code != 0 || strings.Count(out, "\n") != 3 {
		t.Fatalf("history: exit %d\n%s", code, out)
	}
	code, out, _ = run(t, "table", "cat", "--version", "0", src)
	if code != 0 || strings.Count(out, "\n") != 3 {
		t.Fatalf("cat v0: exit %d\n%s", code, out)
	}
	code, out, _ = run(t, "table", "cat", src)
	if code != 0 || strings.Count(out, "\n") != 5 {
		t.Fatalf("cat latest: exit %d\n%s", code, out)
	}
}
