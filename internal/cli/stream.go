package cli

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/silt-dev/silt/internal/stream/locallog"
)

// streamCmd inspects and reshards the embedded stream (locallog). It
// opens the log itself, so silt must not be running (the log's LOCK).
func streamCmd() *cobra.Command {
	c := &cobra.Command{Use: "stream", Short: "Show or reshard the embedded stream's physical shards (silt stopped)",
		Long: `The embedded stream keeps stream.shards logical shards for the life of the lake (Bronze
keys its progress by them); under each, physical shards hold hash key ranges. "split"
closes a physical shard and opens two children over the halves of its range, "merge"
closes two adjacent ones of the same logical shard and opens one over both. Readers
drain parents before children. Like Kinesis SplitShard and MergeShards; for a Kinesis
stream use the AWS API, silt follows it. Run with silt stopped.`}
	var cfgPath, dir string
	open := func() (*locallog.Log, error) {
		if dir == "" {
			cfg, err := loadConfig(cfgPath)
			if err != nil {
				return nil, err
			}
			if cfg.Stream.Kind == "kinesis" {
				return nil, &ExitError{Code: 2, Err: errors.New("stream.kind is kinesis: reshard the Kinesis stream with the AWS API (SplitShard, MergeShards, UpdateShardCount); silt follows it")}
			}
			dir = cfg.Stream.Dir
		}
		l, err := locallog.Open(dir, locallog.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			return nil, fmt.Errorf("%w (is silt running? stop it first)", err)
		}
		return l, nil
	}
	flags := func(cmd *cobra.Command) *cobra.Command {
		cmd.Flags().StringVarP(&cfgPath, "config", "c", "", "path to silt.yaml (its stream.dir)")
		cmd.Flags().StringVar(&dir, "dir", "", "the embedded stream's directory, instead of --config")
		return cmd
	}
	shards := flags(&cobra.Command{
		Use:   "shards",
		Short: "List the physical shards: logical shard, hash key range, open or closed, records",
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := open()
			if err != nil {
				return err
			}
			defer l.Close()
			return printTopology(cmd.OutOrStdout(), l.Topology())
		},
	})
	var at string
	var all bool
	split := flags(&cobra.Command{
		Use:   "split <physical-shard> | --all",
		Short: "Close a physical shard and open two children over the halves of its hash key range",
		RunE: func(cmd *cobra.Command, args []string) error {
			var ids []int
			switch {
			case all && len(args) == 0 && at == "":
			case !all && len(args) == 1:
				id, err := strconv.Atoi(args[0])
				if err != nil {
					return &ExitError{Code: 2, Err: fmt.Errorf("physical shard %q: want a number (see silt stream shards)", args[0])}
				}
				ids = []int{id}
			default:
				return &ExitError{Code: 2, Err: errors.New("give one physical shard, or --all (without --at) to split every open one in the middle")}
			}
			l, err := open()
			if err != nil {
				return err
			}
			defer l.Close()
			if all {
				for _, s := range l.Topology() {
					if s.Open {
						ids = append(ids, s.ID)
					}
				}
			}
			for _, id := range ids {
				kids, err := l.SplitShard(cmd.Context(), id, at)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "split physical shard %d into %d and %d\n", id, kids[0], kids[1])
			}
			return l.Close()
		},
	})
	split.Flags().StringVar(&at, "at", "", "first hash key of the second child, 32 hex digits (default: the middle)")
	split.Flags().BoolVar(&all, "all", false, "split every open physical shard in the middle (doubles them, like Kinesis UpdateShardCount)")
	merge := flags(&cobra.Command{
		Use:   "merge <physical-shard> <physical-shard>",
		Short: "Close two adjacent physical shards of one logical shard and open one over both",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var ids [2]int
			for i, a := range args {
				v, err := strconv.Atoi(a)
				if err != nil {
					return &ExitError{Code: 2, Err: fmt.Errorf("physical shard %q: want a number (see silt stream shards)", a)}
				}
				ids[i] = v
			}
			l, err := open()
			if err != nil {
				return err
			}
			defer l.Close()
			id, err := l.MergeShards(cmd.Context(), ids[0], ids[1])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "merged physical shards %d and %d into %d\n", ids[0], ids[1], id)
			return l.Close()
		},
	})
	c.AddCommand(shards, split, merge)
	return c
}

func printTopology(w io.Writer, shards []locallog.Shard) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "physical\tlogical\thash keys\tstate\toffsets\trecords\tparents")
	for _, s := range shards {
		state, offs := "open", fmt.Sprintf("%d-", s.Opened)
		if !s.Open {
			state, offs = "closed", fmt.Sprintf("%d-%d", s.Opened, s.Closed)
		}
		var ps []string
		for _, p := range s.Parents {
			ps = append(ps, strconv.Itoa(p))
		}
		fmt.Fprintf(tw, "%d\t%d\t%s-%s\t%s\t%s\t%d\t%s\n", s.ID, s.Logical, s.Lo, s.Hi, state, offs, s.End, strings.Join(ps, ","))
	}
	return tw.Flush()
}
