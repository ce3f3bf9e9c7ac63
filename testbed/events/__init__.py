"""Events over time: links cut and restored, profiles changed, routes failed over.

A timeline is a list of events, each at ``at_s`` seconds from the start of
the step, each with exactly one action on the links of one profile name
(``cw-gcp``: every link of that name)::

    - {at_s: 2, link_down: cw-gcp, until_s: 4}          # cut, up again at 4 s
    - {at_s: 3, failover: cw-gcp}                         # routes avoid cw-gcp
    - {at_s: 5, set_profile: {link: cw-gcp, profile: {delay: 40ms, jitter: 5ms, loss: 1%}},
       until_s: 7}                                        # a congestion episode
    - {at_s: 7, failback: cw-gcp}

What each action does in the kernel (docs/events.md has the whole story):

* ``link_down`` / ``link_up``: a shaped link's wire bridge (``br0`` in
  ``tb.<lab>._w<id>``) goes down / up. Both ends keep their carrier, their
  routes and their neighbour entries and send into a black hole, like
  routers behind a fibre cut in the carrier's network (setting the wire's
  ports down instead makes the ends lose carrier, and the kernel then holds
  packets for up to 3 s waiting for ARP and delivers them late: measured,
  ping saw 2 s RTTs and no loss). An unshaped link has no wire: its switch
  end(s) leave their bridge; between two L3 nodes both veth ends go down
  (the kernel drops the routes through them, put back on ``link_up``; the
  routers answer with ICMP unreachable instead of silence).
* ``set_profile``: the given fields over the configured profile; rate by an
  htb class change on the wire port, impairments by the delay backend
  (netem: a netlink change of the netem qdisc; userspace: the delay line
  reloads its config). ``restore_profile`` goes back to the configured one.
* ``failover`` / ``failback``: shortest-path routes recomputed from the
  lab's plan without (with) the link (:func:`testbed.lab.plan.compute_routes`);
  the routes that differ are replaced on the nodes that hold them.

``until_s`` on ``link_down``, ``set_profile`` or ``failover`` adds the undoing
action (``link_up``, ``restore_profile``, ``failback``) at that time.

Modules: :mod:`~testbed.events.model` (events parsed, expanded and checked),
:mod:`~testbed.events.controller` (:class:`EventController`),
:mod:`~testbed.events.scheduler` (:class:`Scheduler`),
:mod:`~testbed.events.timeline` (the ``timeline`` measurement) and
:mod:`~testbed.events.options` (its scenario options); the kernel pieces are
in :mod:`testbed.lab.linkops`.

:class:`EventController` applies actions to a live lab and remembers what it
changed, so :meth:`EventController.restore` (always run in ``finally``) puts
back every link, profile and route. :class:`Scheduler` fires actions at their
times on a monotonic clock in a thread, recording when each really fired.
"""
