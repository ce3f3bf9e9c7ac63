"""pair: the smallest lab -- hosts h1 and h2 joined by one link (unshaped unless you set its profile).

The link's profile is named ``link``; set it with
``testbed up pair --name lab1 --set link.rate=500Mbit --set link.delay=20ms``.

Also a plain Mininet topology: ``mn --custom topologies/pair.py --topo pair``.
"""

from mininet.topo import Topo


class PairTopo(Topo):
    """h1 <-- link --> h2"""

    def build(self):
        self.addHost("h1", site="a")
        self.addHost("h2", site="b")
        self.addLink("h1", "h2", link="link")


topos = {"pair": PairTopo}
