"""TF_CONFIG clusters of worker processes on localhost, for the
--distribution=multi_worker tests."""
import json
import socket


def free_ports(count):
  """`count` TCP ports free on localhost now."""
  socks = [socket.socket() for _ in range(count)]
  for s in socks:
    s.bind(("localhost", 0))
  ports = [s.getsockname()[1] for s in socks]
  for s in socks:
    s.close()
  return ports


def tf_config(cluster, kind, index):
  """TF_CONFIG's JSON for task (kind, index) of `cluster`."""
  return json.dumps({"cluster": cluster,
                     "task": {"type": kind, "index": index}})


def local_workers(count):
  """TF_CONFIG of each of `count` workers on localhost."""
  hosts = ["localhost:%d" % p for p in free_ports(count)]
  return [tf_config({"worker": hosts}, "worker", i) for i in range(count)]
