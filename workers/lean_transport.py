"""The lean HTTP/1.1 transport moved to the backend (`tgms_tui.backend.lean_transport`), where the
long-polling intake uses it too; this name keeps the workers' imports working."""

from tgms_tui.backend.lean_transport import DEFAULT_MAX_RESPONSE_BYTES as DEFAULT_MAX_RESPONSE_BYTES
from tgms_tui.backend.lean_transport import LeanTransport as LeanTransport
from tgms_tui.backend.lean_transport import ResponseTooLarge as ResponseTooLarge
