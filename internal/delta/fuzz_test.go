package delta

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// seedCommits adds a few commit files from the corpus (when present) and
// hand-written edge cases.
func seedCommits(f *testing.F) {
	for _, s := range []string{
		`{"protocol":{"minReaderVersion":1,"minWriterVersion":2}}` + "\n" +
			`{"metaData":{"id":"x","format":{"provider":"parquet","options":{}},"schemaString":"{\"type\":\"struct\",\"fields\":[]}","partitionColumns":[],"configuration":{}}}`,
		`{"add":{"path":"a%20b","partitionValues":{"p":null},"size":1,"modificationTime":1,"dataChange":true,"deletionVector":{"storageType":"u","pathOrInlineDv":"x","offset":1,"sizeInBytes":2,"cardinality":3}}}`,
		`{"remove":{"path":"a b","deletionTimestamp":1,"dataChange":true}}`,
		`{"txn":{"appId":"a","version":1}}` + "\n" + `{"domainMetadata":{"domain":"d","configuration":"{}","removed":false}}`,
		`{"commitInfo":{"inCommitTimestamp":5}}`,
		"\n\n{}",
	} {
		f.Add([]byte(s))
	}
	matches, _ := filepath.Glob(filepath.Join(corpusDir, "*", "*", "_delta_log", "0000000000000000000[01].json"))
	m2, _ := filepath.Glob(filepath.Join(corpusDir, "*", "*", "delta", "_delta_log", "0000000000000000000[01].json"))
	for _, m := range append(matches, m2...) {
		if b, err := os.ReadFile(m); err == nil && len(b) < 64<<10 {
			f.Add(b)
		}
	}
}

// FuzzParseActions: never panics; accepted input re-encodes to a commit that
// parses to the same actions; every prefix at a line boundary parses too.
func FuzzParseActions(f *testing.F) {
	seedCommits(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		acts, err := ParseActions(data)
		if err != nil {
			return
		}
		enc, err := MarshalActions(acts)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		again, err := ParseActions(enc)
		if err != nil {
			t.Fatalf("re-parse: %v\n%s", err, enc)
		}
		if len(again) != len(acts) {
			t.Fatalf("re-parse gave %d actions, want %d", len(again), len(acts))
		}
		enc2, _ := MarshalActions(again)
		if !bytes.Equal(enc, enc2) {
			t.Fatalf("not a fixed point:\n%s\n%s", enc, enc2)
		}
		if i := bytes.LastIndexByte(data, '\n'); i >= 0 {
			if _, err := ParseActions(data[:i]); err != nil {
				t.Fatalf("prefix failed: %v", err)
			}
		}
	})
}

// FuzzReplay: the input is split into commits at "\n---\n"; replay never
// panics, and a successful replay has protocol, metadata, and no file both
// live and a tombstone.
func FuzzReplay(f *testing.F) {
	seedCommits(f)
	f.Add([]byte(`{"protocol":{"minReaderVersion":1,"minWriterVersion":2}}
{"metaData":{"id":"x","format":{"provider":"parquet"},"schemaString":"{}","partitionColumns":[],"configuration":{}}}
{"add":{"path":"a","partitionValues":{},"size":1,"modificationTime":1,"dataChange":true}}
---
{"remove":{"path":"a","dataChange":true}}
{"add":{"path":"b","partitionValues":{},"size":1,"modificationTime":1,"dataChange":true}}
---
{"add":{"path":"a","partitionValues":{},"size":1,"modificationTime":1,"dataChange":true}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var commits [][]Action
		for _, part := range bytes.Split(data, []byte("\n---\n")) {
			acts, err := ParseActions(part)
			if err != nil {
				return
			}
			commits = append(commits, acts)
		}
		s, err := Replay(nil, -1, commits)
		if err != nil {
			return
		}
		if s.Protocol == nil || s.Metadata == nil || s.Version != int64(len(commits)-1) {
			t.Fatalf("bad snapshot %+v", s)
		}
		live := map[fileKey]bool{}
		for _, a := range s.Files() {
			k := keyOf(a.Path, a.DeletionVector)
			if live[k] {
				t.Fatalf("duplicate live file %v", k)
			}
			live[k] = true
		}
		for _, r := range s.Tombstones() {
			if live[keyOf(r.Path, r.DeletionVector)] {
				t.Fatalf("file %q both live and removed", r.Path)
			}
		}
		_ = s.CanRead()
		_ = s.CanWrite()
		_ = s.ColumnMappingMode()
		if _, err := s.CheckpointActions(timeZero); err != nil {
			return
		}
	})
}

var timeZero = func() (t time.Time) { return }()
