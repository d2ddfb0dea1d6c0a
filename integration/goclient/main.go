// berth-goclient: containerd's own Go client (Debian's golang-github-containerd-containerd-dev,
// containerd 1.6), wired to berth's daemons service by service as DESIGN.md says a Go program
// does it: content, leases and namespaces on contentd, the snapshotter "overlayfs" on snapshotd,
// images on imaged, containers and tasks on execd. integration/goclient_test.cc builds it at test
// time (GOPATH mode, offline, from Debian's Go sources) and runs it against real daemons.
//
// Commands (flags first, then the command):
//
//	images IMAGE TAG   lists the images, tags IMAGE as TAG, reads TAG back; prints "image NAME
//	                   DIGEST" per image listed and "tagged TAG DIGEST"
//	run IMAGE ID       containerd's client flow: a container with a new snapshot on IMAGE's
//	                   chain and a spec from its config, a task (stdout into a pipe), Start, an
//	                   Exec of a second process (its exit code and output checked), then
//	                   -kill=client: task.Kill(SIGTERM) here; -kill=external: prints "running ID"
//	                   and waits for someone else (ctr) to kill it. Then Wait, the exit code
//	                   checked, task.Delete, container.Delete(WithSnapshotCleanup).
//
// Prints one line per step; exits 1 with the failing step's error on stderr.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/containerd"
	containersapi "github.com/containerd/containerd/api/services/containers/v1"
	contentapi "github.com/containerd/containerd/api/services/content/v1"
	imagesapi "github.com/containerd/containerd/api/services/images/v1"
	leasesapi "github.com/containerd/containerd/api/services/leases/v1"
	namespacesapi "github.com/containerd/containerd/api/services/namespaces/v1"
	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/cio"
	contentproxy "github.com/containerd/containerd/content/proxy"
	"github.com/containerd/containerd/images"
	leasesproxy "github.com/containerd/containerd/leases/proxy"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/oci"
	"github.com/containerd/containerd/pkg/dialer"
	"github.com/containerd/containerd/snapshots"
	snproxy "github.com/containerd/containerd/snapshots/proxy"
	"google.golang.org/grpc"
)

const snapshotter = "overlayfs"

// The task's process: prints a line, exits 42 on SIGTERM (as PID 1 it has no default action).
const mainScript = `trap 'echo got-term; exit 42' TERM; echo hello-from-goclient; while true; do sleep 1; done`

// The Exec'd process: both streams, and an exit code of its own.
const execScript = `echo exec-out; echo exec-err >&2; exit 3`

var (
	contentdAddr  = flag.String("contentd", "", "contentd's socket")
	snapshotdAddr = flag.String("snapshotd", "", "snapshotd's socket")
	imagedAddr    = flag.String("imaged", "", "imaged's socket")
	execdAddr     = flag.String("execd", "", "execd's socket")
	namespace     = flag.String("namespace", "default", "containerd namespace")
	fifoDir       = flag.String("fifo-dir", "", "where the stdio FIFOs are made")
	kill          = flag.String("kill", "client", "who kills the task: client or external")
	timeout       = flag.Duration("timeout", 120*time.Second, "for the whole command")
)

// A bytes.Buffer written by cio's copy goroutines and read by main.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func dial(ctx context.Context, address string) (*grpc.ClientConn, error) {
	if address == "" {
		return nil, fmt.Errorf("an address flag is missing")
	}
	conn, err := grpc.DialContext(ctx, dialer.DialAddress(address), grpc.WithInsecure(),
		grpc.WithBlock(), grpc.WithContextDialer(dialer.ContextDialer))
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", address, err)
	}
	return conn, nil
}

// newClient wires containerd's client to the daemons, one service at a time.
func newClient(ctx context.Context) (*containerd.Client, error) {
	contentd, err := dial(ctx, *contentdAddr)
	if err != nil {
		return nil, err
	}
	snapshotd, err := dial(ctx, *snapshotdAddr)
	if err != nil {
		return nil, err
	}
	imaged, err := dial(ctx, *imagedAddr)
	if err != nil {
		return nil, err
	}
	execd, err := dial(ctx, *execdAddr)
	if err != nil {
		return nil, err
	}
	return containerd.New("", containerd.WithServices(
		containerd.WithContentStore(contentproxy.NewContentStore(contentapi.NewContentClient(contentd))),
		containerd.WithLeasesService(leasesproxy.NewLeaseManager(leasesapi.NewLeasesClient(contentd))),
		containerd.WithNamespaceClient(namespacesapi.NewNamespacesClient(contentd)),
		containerd.WithSnapshotters(map[string]snapshots.Snapshotter{
			snapshotter: snproxy.NewSnapshotter(snapshotsapi.NewSnapshotsClient(snapshotd), snapshotter),
		}),
		containerd.WithImageClient(imagesapi.NewImagesClient(imaged)),
		containerd.WithContainerClient(containersapi.NewContainersClient(execd)),
		containerd.WithTaskClient(tasksapi.NewTasksClient(execd)),
	))
}

func imagesCommand(ctx context.Context, client *containerd.Client, name, tag string) error {
	list, err := client.ListImages(ctx)
	if err != nil {
		return fmt.Errorf("ListImages: %w", err)
	}
	for _, image := range list {
		fmt.Printf("image %s %s\n", image.Name(), image.Target().Digest)
	}
	image, err := client.GetImage(ctx, name)
	if err != nil {
		return fmt.Errorf("GetImage %s: %w", name, err)
	}
	// As `ctr images tag` does it: a new record with the source's target.
	if _, err := client.ImageService().Create(ctx, images.Image{Name: tag, Target: image.Target()}); err != nil {
		return fmt.Errorf("tag %s as %s: %w", name, tag, err)
	}
	tagged, err := client.GetImage(ctx, tag)
	if err != nil {
		return fmt.Errorf("GetImage %s: %w", tag, err)
	}
	fmt.Printf("tagged %s %s\n", tagged.Name(), tagged.Target().Digest)
	return nil
}

// waitExit waits for a status and checks its code.
func waitExit(what string, statusC <-chan containerd.ExitStatus, want uint32) error {
	select {
	case status := <-statusC:
		code, _, err := status.Result()
		if err != nil {
			return fmt.Errorf("%s: wait: %w", what, err)
		}
		fmt.Printf("%s exited %d\n", what, code)
		if code != want {
			return fmt.Errorf("%s exited %d, want %d", what, code, want)
		}
		return nil
	case <-time.After(*timeout):
		return fmt.Errorf("%s: no exit within %s", what, *timeout)
	}
}

// waitOutput polls `buf` until it holds `want`.
func waitOutput(what string, buf *syncBuffer, want string) error {
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(buf.String(), want) {
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %q never printed; got %q", what, want, buf.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

func runCommand(ctx context.Context, client *containerd.Client, name, id string) (err error) {
	image, err := client.GetImage(ctx, name)
	if err != nil {
		return fmt.Errorf("GetImage %s: %w", name, err)
	}
	container, err := client.NewContainer(ctx, id,
		containerd.WithSnapshotter(snapshotter),
		containerd.WithNewSnapshot(id+"-snapshot", image),
		containerd.WithNewSpec(oci.WithImageConfig(image), oci.WithProcessArgs("sh", "-c", mainScript)))
	if err != nil {
		return fmt.Errorf("NewContainer: %w", err)
	}
	fmt.Printf("container %s snapshot %s-snapshot\n", id, id)
	defer func() {
		if derr := container.Delete(ctx, containerd.WithSnapshotCleanup); derr != nil && err == nil {
			err = fmt.Errorf("container.Delete: %w", derr)
		} else if derr == nil {
			fmt.Printf("container deleted\n")
		}
	}()

	var out, errOut syncBuffer
	task, err := container.NewTask(ctx, cio.NewCreator(cio.WithStreams(nil, &out, &errOut), cio.WithFIFODir(*fifoDir)))
	if err != nil {
		return fmt.Errorf("NewTask: %w", err)
	}
	defer func() {
		if _, derr := task.Delete(ctx, containerd.WithProcessKill); derr != nil && err == nil {
			err = fmt.Errorf("task.Delete: %w", derr)
		} else if derr == nil {
			fmt.Printf("task deleted\n")
		}
	}()
	statusC, err := task.Wait(ctx)
	if err != nil {
		return fmt.Errorf("task.Wait: %w", err)
	}
	if err := task.Start(ctx); err != nil {
		return fmt.Errorf("task.Start: %w", err)
	}
	fmt.Printf("task started pid %d\n", task.Pid())
	if err := waitOutput("task", &out, "hello-from-goclient\n"); err != nil {
		return err
	}

	// A second process in the running container, with its own stdio and exit code.
	spec, err := container.Spec(ctx)
	if err != nil {
		return fmt.Errorf("container.Spec: %w", err)
	}
	pspec := spec.Process
	pspec.Args = []string{"sh", "-c", execScript}
	var execOut, execErr syncBuffer
	process, err := task.Exec(ctx, "exec-1", pspec, cio.NewCreator(cio.WithStreams(nil, &execOut, &execErr), cio.WithFIFODir(*fifoDir)))
	if err != nil {
		return fmt.Errorf("task.Exec: %w", err)
	}
	execC, err := process.Wait(ctx)
	if err != nil {
		return fmt.Errorf("process.Wait: %w", err)
	}
	if err := process.Start(ctx); err != nil {
		return fmt.Errorf("process.Start: %w", err)
	}
	if err := waitExit("exec", execC, 3); err != nil {
		return err
	}
	if _, err := process.Delete(ctx); err != nil {
		return fmt.Errorf("process.Delete: %w", err)
	}
	if execOut.String() != "exec-out\n" || execErr.String() != "exec-err\n" {
		return fmt.Errorf("exec output: stdout %q, stderr %q", execOut.String(), execErr.String())
	}
	fmt.Printf("exec output ok\n")

	if *kill == "client" {
		if err := task.Kill(ctx, syscall.SIGTERM); err != nil {
			return fmt.Errorf("task.Kill: %w", err)
		}
	} else {
		fmt.Printf("running %s\n", id)
	}
	if err := waitExit("task", statusC, 42); err != nil {
		return err
	}
	if err := waitOutput("task", &out, "got-term\n"); err != nil {
		return err
	}
	return nil
}

func run() error {
	flag.Parse()
	args := flag.Args()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	ctx = namespaces.WithNamespace(ctx, *namespace)
	client, err := newClient(ctx)
	if err != nil {
		return err
	}
	defer client.Close()
	switch {
	case len(args) == 3 && args[0] == "images":
		return imagesCommand(ctx, client, args[1], args[2])
	case len(args) == 3 && args[0] == "run":
		if *kill != "client" && *kill != "external" {
			return fmt.Errorf("-kill: client or external, not %q", *kill)
		}
		return runCommand(ctx, client, args[1], args[2])
	default:
		return fmt.Errorf("usage: berth-goclient [flags] images IMAGE TAG | run IMAGE ID")
	}
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "berth-goclient: %v\n", err)
		os.Exit(1)
	}
}
