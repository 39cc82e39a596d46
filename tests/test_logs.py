"""One line per event, the call/message id on every record, phone numbers masked at INFO."""

from __future__ import annotations

import asyncio
import io
import logging

from appliance.logs import log_context, mask_text, setup_logging


def test_masking_keeps_dates_and_ids() -> None:
    text = "from +972501234567 at 2026-11-24 17:50:19 via whatsapp:+15550001111 sid CA1234567890"
    assert mask_text(text) == ("from +97250*****67 at 2026-11-24 17:50:19 via "
                               "whatsapp:+15550****11 sid CA1234567890")


async def test_every_record_carries_the_context_id_across_tasks() -> None:
    stream = io.StringIO()
    setup_logging("info", stream=stream)
    log = logging.getLogger("appliance.test")

    async def stage() -> None:
        log.info("caller %s said hello", "+972501234567")

    with log_context("CA42"):
        await asyncio.create_task(stage())
    log.debug("not shown at info")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    assert "[CA42]" in lines[0] and "+97250*****67" in lines[0] and "1234567" not in lines[0]
    logging.getLogger().handlers.clear()
