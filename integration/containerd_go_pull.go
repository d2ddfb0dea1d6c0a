// containerd's Go client pulling with unpack: client.Pull(ref, WithPullUnpack), the path CRI
// and nerdctl take (containerd's unpacker, which asks the snapshotter for each layer by
// containerd.io/snapshot.ref before applying it). `ctr images pull` takes another path
// (image.Unpack) that never asks. Plain HTTP to every registry.
//
// Usage: containerd-go-pull ADDRESS NAMESPACE REFERENCE SNAPSHOTTER
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/remotes/docker"
)

func main() {
	if len(os.Args) != 5 {
		fmt.Fprintln(os.Stderr, "usage: containerd-go-pull ADDRESS NAMESPACE REFERENCE SNAPSHOTTER")
		os.Exit(2)
	}
	client, err := containerd.New(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer client.Close()
	ctx := namespaces.WithNamespace(context.Background(), os.Args[2])
	resolver := docker.NewResolver(docker.ResolverOptions{
		Hosts: docker.ConfigureDefaultRegistries(docker.WithPlainHTTP(docker.MatchAllHosts)),
	})
	img, err := client.Pull(ctx, os.Args[3], containerd.WithPullUnpack,
		containerd.WithPullSnapshotter(os.Args[4]), containerd.WithResolver(resolver))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(img.Name())
}
