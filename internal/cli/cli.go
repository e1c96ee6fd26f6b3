// Package cli holds silt's subcommands. Commands are thin: they parse flags,
// load configuration and call the stage packages.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/silt-dev/silt/internal/config"
)

// Version is set at build time.
var Version = "dev"

// ExitError carries a process exit code.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

// Main runs the CLI and returns the process exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	root := Root(stdout, stderr)
	root.SetArgs(args)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	code := 1
	var ee *ExitError
	if errors.As(err, &ee) {
		code = ee.Code
	}
	msg := err.Error()
	var ve *config.ValidationError
	if !errors.As(err, &ve) {
		// One line: what failed and what to do. Details go to the log.
		msg = strings.ReplaceAll(msg, "\n", " ")
	}
	fmt.Fprintln(stderr, "silt: "+msg)
	return code
}

// Root builds the command tree.
func Root(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "silt",
		Short: "silt streams every PostgreSQL change into a Delta Lake, exactly once",
		Long: `silt streams every change in PostgreSQL (logical replication, pgoutput) through a
sharded stream into Bronze (raw Parquet, partitioned by commit hour, as Delta tables)
and Silver (Delta tables kept equal to the source by MERGE), with exactly-once effect.

Start with "silt demo" to see it work on a throwaway database, then write a config
("silt config example > silt.yaml") and "silt run --config silt.yaml".`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       Version,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(runCmd(), demoCmd(), checkCmd(), configCmd(), tableCmd(), slotCmd(), shardsCmd(), statusCmd(), benchCmd())
	root.AddCommand(doctorCmd(), streamCmd())
	return root
}

func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	switch level {
	case "debug":
		l = slog.LevelDebug
	case "warn":
		l = slog.LevelWarn
	case "error":
		l = slog.LevelError
	default:
		l = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l}))
}

func loadConfig(path string) (*config.Config, error) {
	if path == "" {
		return nil, &ExitError{Code: 2, Err: errors.New("--config is required: write one with \"silt config example > silt.yaml\"")}
	}
	c, err := config.Load(path)
	if err != nil {
		return nil, &ExitError{Code: 2, Err: err}
	}
	if err := c.Validate(); err != nil {
		return nil, &ExitError{Code: 2, Err: err}
	}
	return c, nil
}

func durationFlag(cmd *cobra.Command, name string) time.Duration {
	d, _ := cmd.Flags().GetDuration(name)
	return d
}
