package delta

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// The checksums in the corpus' _last_checkpoint files were written by
// Spark; our canonical form must reproduce them.
func TestLastCheckpointChecksumCorpus(t *testing.T) {
	loadManifest(t)
	matches, _ := filepath.Glob(filepath.Join(corpusDir, "*", "*", "delta", "_delta_log", "_last_checkpoint"))
	n := 0
	for _, m := range matches {
		raw, err := os.ReadFile(m)
		if err != nil {
			t.Fatal(err)
		}
		var lc struct {
			Checksum string `json:"checksum"`
		}
		if json.Unmarshal(raw, &lc) != nil || lc.Checksum == "" {
			continue
		}
		n++
		got, err := lastCheckpointChecksum(raw)
		if err != nil || got != lc.Checksum {
			t.Errorf("%s: checksum %s, want %s (%v)", m, got, lc.Checksum, err)
		}
	}
	if n == 0 {
		t.Fatal("no checksums in corpus")
	}
}
