package kinesis

import (
	"context"
	"crypto/md5"
	"fmt"
	"math/big"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/smithy-go"
)

// fake is an in-process Kinesis with control hooks, in the spirit of
// kfake's ControlKey: tests fail chosen PutRecords entries or whole calls,
// reshard, and look at every GetRecords call.
type fake struct {
	mu      sync.Mutex
	streams map[string]*fstream
	seq     int64

	// putEntry, if set, is asked for each PutRecords entry; a non-empty
	// code fails that entry.
	putEntry func(e types.PutRecordsRequestEntry) string
	// putCall, if set, can fail a whole PutRecords call.
	putCall func() error
	// gets records the time of every GetRecords call per shard.
	gets map[string][]time.Time
	// pageSize splits ListShards results into pages.
	pageSize int
}

type fstream struct {
	shards []*fshard
	nextID int
}

type fshard struct {
	id, parent, adj string
	lo, hi          *big.Int
	recs            []types.Record
	closed          bool
}

func newFake() *fake {
	return &fake{streams: map[string]*fstream{}, gets: map[string][]time.Time{}, pageSize: 2}
}

func apiErr(code, msg string) error { return &smithy.GenericAPIError{Code: code, Message: msg} }

func (f *fake) stream(name *string) (*fstream, error) {
	st, ok := f.streams[aws.ToString(name)]
	if !ok {
		return nil, apiErr(codeNotFound, "stream "+aws.ToString(name)+" not found")
	}
	return st, nil
}

func (st *fstream) add(parent, adj string, lo, hi *big.Int) *fshard {
	s := &fshard{id: fmt.Sprintf("shardId-%012d", st.nextID), parent: parent, adj: adj, lo: lo, hi: hi}
	st.nextID++
	st.shards = append(st.shards, s)
	return s
}

func (st *fstream) find(id string) *fshard {
	for _, s := range st.shards {
		if s.id == id {
			return s
		}
	}
	return nil
}

func (f *fake) CreateStream(ctx context.Context, in *kinesis.CreateStreamInput, _ ...func(*kinesis.Options)) (*kinesis.CreateStreamOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	name := aws.ToString(in.StreamName)
	if _, ok := f.streams[name]; ok {
		return nil, apiErr(codeInUse, "exists")
	}
	n := int64(aws.ToInt32(in.ShardCount))
	st := &fstream{}
	step := new(big.Int).Div(two128, big.NewInt(n))
	for i := range n {
		lo := new(big.Int).Mul(step, big.NewInt(i))
		hi := new(big.Int).Sub(new(big.Int).Mul(step, big.NewInt(i+1)), big.NewInt(1))
		if i == n-1 {
			hi = new(big.Int).Sub(two128, big.NewInt(1))
		}
		st.add("", "", lo, hi)
	}
	f.streams[name] = st
	return &kinesis.CreateStreamOutput{}, nil
}

func (f *fake) DescribeStreamSummary(ctx context.Context, in *kinesis.DescribeStreamSummaryInput, _ ...func(*kinesis.Options)) (*kinesis.DescribeStreamSummaryOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st, err := f.stream(in.StreamName)
	if err != nil {
		return nil, err
	}
	open := int32(0)
	for _, s := range st.shards {
		if !s.closed {
			open++
		}
	}
	return &kinesis.DescribeStreamSummaryOutput{StreamDescriptionSummary: &types.StreamDescriptionSummary{
		StreamName: in.StreamName, StreamStatus: types.StreamStatusActive, OpenShardCount: aws.Int32(open)}}, nil
}

func (f *fake) ListShards(ctx context.Context, in *kinesis.ListShardsInput, _ ...func(*kinesis.Options)) (*kinesis.ListShardsOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	name, start := aws.ToString(in.StreamName), 0
	if in.NextToken != nil {
		if in.StreamName != nil {
			return nil, apiErr("InvalidArgumentException", "NextToken and StreamName cannot be provided together")
		}
		var ok bool
		name, start, ok = parseToken(*in.NextToken)
		if !ok {
			return nil, apiErr("InvalidArgumentException", "bad token")
		}
	}
	st, err := f.stream(aws.String(name))
	if err != nil {
		return nil, err
	}
	out := &kinesis.ListShardsOutput{}
	end := min(len(st.shards), start+f.pageSize)
	for _, s := range st.shards[start:end] {
		sh := types.Shard{ShardId: aws.String(s.id), HashKeyRange: &types.HashKeyRange{
			StartingHashKey: aws.String(s.lo.String()), EndingHashKey: aws.String(s.hi.String())}}
		if s.parent != "" {
			sh.ParentShardId = aws.String(s.parent)
		}
		if s.adj != "" {
			sh.AdjacentParentShardId = aws.String(s.adj)
		}
		out.Shards = append(out.Shards, sh)
	}
	if end < len(st.shards) {
		out.NextToken = aws.String(fmt.Sprintf("%s|%d", name, end))
	}
	return out, nil
}

func parseToken(t string) (string, int, bool) {
	name, n, ok := strings.Cut(t, "|")
	i, err := strconv.Atoi(n)
	return name, i, ok && err == nil
}

func (f *fake) PutRecords(ctx context.Context, in *kinesis.PutRecordsInput, _ ...func(*kinesis.Options)) (*kinesis.PutRecordsOutput, error) {
	if f.putCall != nil {
		if err := f.putCall(); err != nil {
			return nil, err
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	st, err := f.stream(in.StreamName)
	if err != nil {
		return nil, err
	}
	if len(in.Records) > maxBatchRecords {
		return nil, apiErr("ValidationException", "too many records")
	}
	out := &kinesis.PutRecordsOutput{FailedRecordCount: aws.Int32(0)}
	for _, e := range in.Records {
		if len(e.Data)+len(aws.ToString(e.PartitionKey)) > maxRecordBytes {
			return nil, apiErr("ValidationException", "record too large")
		}
		if f.putEntry != nil {
			if code := f.putEntry(e); code != "" {
				out.Records = append(out.Records, types.PutRecordsResultEntry{ErrorCode: aws.String(code), ErrorMessage: aws.String("injected")})
				*out.FailedRecordCount++
				continue
			}
		}
		var h *big.Int
		if e.ExplicitHashKey != nil {
			h, _ = new(big.Int).SetString(*e.ExplicitHashKey, 10)
		} else {
			sum := md5.Sum([]byte(aws.ToString(e.PartitionKey)))
			h = new(big.Int).SetBytes(sum[:])
		}
		var target *fshard
		for _, s := range st.shards {
			if !s.closed && s.lo.Cmp(h) <= 0 && h.Cmp(s.hi) <= 0 {
				target = s
			}
		}
		f.seq++
		seq := fmt.Sprintf("%056d", f.seq)
		now := time.Now()
		target.recs = append(target.recs, types.Record{Data: append([]byte(nil), e.Data...), PartitionKey: e.PartitionKey,
			SequenceNumber: aws.String(seq), ApproximateArrivalTimestamp: &now})
		out.Records = append(out.Records, types.PutRecordsResultEntry{SequenceNumber: aws.String(seq), ShardId: aws.String(target.id)})
	}
	return out, nil
}

func (f *fake) GetShardIterator(ctx context.Context, in *kinesis.GetShardIteratorInput, _ ...func(*kinesis.Options)) (*kinesis.GetShardIteratorOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st, err := f.stream(in.StreamName)
	if err != nil {
		return nil, err
	}
	s := st.find(aws.ToString(in.ShardId))
	if s == nil {
		return nil, apiErr(codeNotFound, "no shard")
	}
	pos := 0
	switch in.ShardIteratorType {
	case types.ShardIteratorTypeTrimHorizon:
	case types.ShardIteratorTypeAfterSequenceNumber:
		after := aws.ToString(in.StartingSequenceNumber)
		pos = sort.Search(len(s.recs), func(i int) bool { return *s.recs[i].SequenceNumber > after })
	default:
		return nil, apiErr("InvalidArgumentException", "unsupported iterator type")
	}
	return &kinesis.GetShardIteratorOutput{ShardIterator: aws.String(fmt.Sprintf("%s|%s|%d", aws.ToString(in.StreamName), s.id, pos))}, nil
}

func (f *fake) GetRecords(ctx context.Context, in *kinesis.GetRecordsInput, _ ...func(*kinesis.Options)) (*kinesis.GetRecordsOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	parts := strings.Split(aws.ToString(in.ShardIterator), "|")
	if len(parts) != 3 {
		return nil, apiErr("InvalidArgumentException", "bad iterator")
	}
	st, err := f.stream(aws.String(parts[0]))
	if err != nil {
		return nil, err
	}
	s := st.find(parts[1])
	pos, _ := strconv.Atoi(parts[2])
	f.gets[s.id] = append(f.gets[s.id], time.Now())
	n := min(len(s.recs)-pos, int(aws.ToInt32(in.Limit)))
	out := &kinesis.GetRecordsOutput{MillisBehindLatest: aws.Int64(0)}
	for _, r := range s.recs[pos : pos+n] {
		r.Data = append([]byte(nil), r.Data...)
		out.Records = append(out.Records, r)
	}
	if pos+n < len(s.recs) {
		out.MillisBehindLatest = aws.Int64(1000)
	}
	if !(s.closed && pos+n == len(s.recs) && n == 0) {
		out.NextShardIterator = aws.String(fmt.Sprintf("%s|%s|%d", parts[0], s.id, pos+n))
	}
	return out, nil
}

// split closes shard id and creates two children split at the middle of
// its range.
func (f *fake) split(stream, id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.streams[stream]
	p := st.find(id)
	p.closed = true
	mid := new(big.Int).Rsh(new(big.Int).Add(p.lo, p.hi), 1)
	st.add(p.id, "", p.lo, mid)
	st.add(p.id, "", new(big.Int).Add(mid, big.NewInt(1)), p.hi)
}

// merge closes two adjacent shards and creates their union.
func (f *fake) merge(stream, a, b string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.streams[stream]
	x, y := st.find(a), st.find(b)
	x.closed, y.closed = true, true
	st.add(x.id, y.id, x.lo, y.hi)
}

// openShards returns the ids of open shards.
func (f *fake) openShards(stream string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var ids []string
	for _, s := range f.streams[stream].shards {
		if !s.closed {
			ids = append(ids, s.id)
		}
	}
	return ids
}

// count returns how many records the stream holds in all shards.
func (f *fake) count(stream string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, s := range f.streams[stream].shards {
		n += len(s.recs)
	}
	return n
}

// maxGetsPerSecond returns the most GetRecords calls any shard saw within
// one second.
func (f *fake) maxGetsPerSecond() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	most := 0
	for _, ts := range f.gets {
		j := 0
		for i := range ts {
			for ts[i].Sub(ts[j]) >= time.Second {
				j++
			}
			most = max(most, i-j+1)
		}
	}
	return most
}

var _ API = (*fake)(nil)

func createInput(name string, n int) *kinesis.CreateStreamInput {
	return &kinesis.CreateStreamInput{StreamName: aws.String(name), ShardCount: aws.Int32(int32(n))}
}

func putInput(name string, es []types.PutRecordsRequestEntry) *kinesis.PutRecordsInput {
	return &kinesis.PutRecordsInput{StreamName: aws.String(name), Records: es}
}
