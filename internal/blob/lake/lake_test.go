package lake_test

import (
	"context"
	"strings"
	"testing"

	"github.com/silt-dev/silt/internal/blob/lake"
	"github.com/silt-dev/silt/internal/blob/local"
	"github.com/silt-dev/silt/internal/blob/s3"
	"github.com/silt-dev/silt/internal/blob/s3/s3test"
	"github.com/silt-dev/silt/internal/config"
)

func TestOpenLocal(t *testing.T) {
	dir := t.TempDir()
	st, err := lake.Open(context.Background(), config.LakeConfig{Path: dir})
	if err != nil {
		t.Fatal(err)
	}
	if l, ok := st.(*local.Store); !ok || l.Root() != dir {
		t.Fatalf("got %T", st)
	}
}

// TestOpenS3 goes through the default credential chain (environment), as
// silt run does.
func TestOpenS3(t *testing.T) {
	srv := s3test.Gofakes3(t)
	t.Setenv("AWS_ACCESS_KEY_ID", s3test.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", s3test.SecretKey)
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	c := config.Default("")
	c.Lake.Path = "s3://" + srv.Bucket + "/silt/lake/"
	c.Lake.Endpoint = srv.Endpoint
	c.Lake.PathStyle = true
	st, err := lake.Open(context.Background(), c.Lake)
	if err != nil {
		t.Fatal(err)
	}
	s, ok := st.(*s3.Store)
	if !ok || s.URL() != "s3://"+srv.Bucket+"/silt/lake" {
		t.Fatalf("got %T %v", st, s)
	}
	if err := st.Put(context.Background(), "x", []byte("y")); err != nil {
		t.Fatal(err)
	}
	o, _ := lake.S3Options(c.Lake)
	if o.Region != "" || o.PartSize != 16<<20 || o.MaxAttempts != 8 || o.Concurrency != 4 {
		t.Fatalf("options %+v", o)
	}

	c.Lake.Path = "s3://missing-bucket/x"
	if _, err := lake.Open(context.Background(), c.Lake); err == nil || !strings.Contains(err.Error(), `create bucket "missing-bucket"`) {
		t.Fatalf("missing bucket: %v", err)
	}
}
