"""Per-sandbox egress: a sandbox with a policy has a network namespace of its own whose only way
out is this worker's gate.

    sandbox netns                       host
    eth0 10.231.N.2/30 ──veth──▶ rke<hash> 10.231.N.1/30
      default route via .1               nftables (table inet rock_egress_<worker>):
                                           every TCP connection → redirect to the gate's port
                                           UDP to port 53      → redirect to the gate's resolver
                                           anything else from the veth (UDP, ICMP, IPv6,
                                           forwarding to anywhere) → dropped

The gate (``rock.runtime.egress.gate``) reads each connection's original destination
(``SO_ORIGINAL_DST``), peeks at its first bytes for the TLS SNI or the HTTP ``Host``, decides with
the sandbox's policy (``rock.runtime.egress.rules``) and dials the destination itself: an allowed
name is dialled at the address our resolver gives for it, never at the address the sandbox chose,
so a ``Host``/SNI that names an allowed host cannot carry the connection elsewhere. DNS (UDP and
TCP, to any resolver address) is answered by the gate from the same policy: denied names do not
exist, and no answer is an address of the host, the admin or another sandbox.
"""
