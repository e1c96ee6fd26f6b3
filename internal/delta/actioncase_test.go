package delta

import "testing"

func TestActionNamesAreCaseSensitive(t *testing.T) {
	acts, err := ParseActions([]byte(`{"Add":{"path":"x","partitionValues":{},"size":1,"modificationTime":1,"dataChange":true}}
{"COMMITINFO":{}}
{"add":null}
{"commitInfo":{}}
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(acts) != 1 || acts[0].CommitInfo == nil {
		t.Fatalf("want only the exact-case commitInfo, got %+v", acts)
	}
	enc, err := MarshalActions(acts)
	if err != nil || string(enc) != "{\"commitInfo\":{}}\n" {
		t.Fatalf("empty commitInfo re-encoded as %q, %v", enc, err)
	}
}
