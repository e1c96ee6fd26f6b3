package local_test

import (
	"testing"

	"github.com/silt-dev/silt/internal/blob"
	"github.com/silt-dev/silt/internal/blob/blobtest"
	"github.com/silt-dev/silt/internal/blob/local"
)

func TestConformance(t *testing.T) {
	blobtest.Run(t, func(t *testing.T) blob.Store {
		s, err := local.New(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return s
	}, blobtest.Options{})
}
