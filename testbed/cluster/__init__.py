"""Labs across machines: placement, plan slices, ssh control, tunnels, one-box stand-ins.

On Mininet Cluster Edition's model (``mininet.examples.cluster``): ssh with
BatchMode and ControlMaster connection sharing for control, the kernel's own
tunnels (VXLAN, a key per link) for the data plane. See docs/scale-out.md.
"""
