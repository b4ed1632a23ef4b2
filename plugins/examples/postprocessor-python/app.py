"""Example Kiki postprocessor written in Python (`shout@0.1.0`).

Upper-cases the text of final transcripts (partials pass through unchanged) and logs one
debug line per call through the host's `log` import. Built into a component by
componentize-py (see build.sh); `wit_world` is the bindings module componentize-py generates
from wit/kiki.wit at build time.
"""

from wit_world import exports
from wit_world.imports import host, types


class Postprocessor(exports.Postprocessor):
    def process(self, input: types.Transcript, options: types.SessionOptions) -> types.Transcript:
        if input.kind == types.CutKind.FINAL:
            input.text = input.text.upper()
        host.log(host.Level.DEBUG, f"shout: {len(input.text)} chars for session {options.session_id}")
        return input
