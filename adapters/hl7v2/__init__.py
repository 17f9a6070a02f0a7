"""HL7 v2.x lab results (``ORU^R01``): parsing, ACKs, a drop-directory adapter and an MLLP listener.

- :mod:`adapters.hl7v2.parse` turns one message into raw :class:`~adapters.base.SourceRow` s
  (one per ORDER_OBSERVATION) and a row into a :class:`~adapters.base.LabReportRecord`;
- :mod:`adapters.hl7v2.ack` builds the ``ACK`` answering a message;
- :mod:`adapters.hl7v2.drop` reads ``*.hl7`` / ``*.txt`` files a LIS drops in a directory;
- :mod:`adapters.hl7v2.mllp` receives messages over MLLP and answers with ACKs.
"""
