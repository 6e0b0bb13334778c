"""Watch one message travel: hop events from every role, correlated by a flow id, drawn as a sequence diagram.

- :mod:`flow.hops`: :class:`~flow.hops.Hop`, one hop (who, from which lifeline to which, what, how long).
- :mod:`flow.ids`: :func:`~flow.ids.flow_id`, the correlation id of one chat message.
- :mod:`flow.publisher`: :class:`~flow.publisher.FlowPublisher`, one UDP datagram per hop, off by default.
- :mod:`flow.collector`: :class:`~flow.collector.FlowCollector`, the loopback UDP socket that gathers them.
- :mod:`flow.journey`: :class:`~flow.journey.JourneyBook`, hops grouped into one journey per message.
- :mod:`flow.mermaid`, :mod:`flow.record`: the journey as a Mermaid ``sequenceDiagram``, and a Markdown recording.
"""

from .collector import FlowCollector
from .hops import KINDS, Hop, InvalidHop, Lifeline, Role
from .ids import FLOW_ID_HEADER, flow_id
from .journey import Journey, JourneyBook
from .mermaid import sequence_diagram
from .publisher import FlowPublisher, add_flow_argument, parse_flow_address
from .record import Recorder

__all__ = [
    "FLOW_ID_HEADER",
    "KINDS",
    "FlowCollector",
    "FlowPublisher",
    "Hop",
    "InvalidHop",
    "Journey",
    "JourneyBook",
    "Lifeline",
    "Recorder",
    "Role",
    "add_flow_argument",
    "flow_id",
    "parse_flow_address",
    "sequence_diagram",
]
