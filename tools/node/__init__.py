"""A real single-node Kubernetes on this machine, inside a network namespace of its own.

- `controlplane`: etcd, kube-apiserver, kube-controller-manager (and kube-scheduler), also used
  on loopback by the cluster tier (tests/cluster).
- `netns`: the namespace (a veth pair with both ends inside, so no packet leaves it) and running
  code or commands inside it; `forward`: a 127.0.0.1 port of the host relayed into it.
- `images`: OCI archives written directly (pause, CoreDNS, metrics-server, busybox) and their
  import into containerd.
- `node`: containerd, kubelet, kube-proxy, kube-router's firewall and the add-ons, up and down.

`python -m tools.node up|down|status` drives a node from the shell (`make cluster-up`);
tests use the `node_cluster` fixture of tests/node/conftest.py.
"""
