"""pipecat 1.14 as its Twilio template sets it up, on our models, for the turn benchmark.

Run with the pipecat venv's python (bench/pipecat_bench/venv.py), not the product's:

    bench/.cache/pipecat-venv/bin/python bench/pipecat_bench/bot.py --port 8765 \
        --public-url https://bench.example --gemini-url http://127.0.0.1:PORT \
        --whisper DIR --voice .../en_US-joe-medium.onnx

As pipecat's examples/twilio-chatbot: POST /voice-stream answers TwiML <Connect><Stream> to /ws;
/ws reads Twilio's `connected`/`start` (pipecat.runner.utils.parse_telephony_websocket), then
runs FastAPIWebsocketTransport + TwilioFrameSerializer -> WhisperSTTService (faster-whisper on
the real tiny.en directory) -> LLMContextAggregatorPair (Silero VAD, stop_secs 0.2, and the
smart-turn v3.2 local analyzer as the stop strategy: pipecat's defaults) -> GoogleLLMService
(pointed at the Gemini stand-in with http_options.base_url) -> PiperTTSService (the real joe
voice, loaded from its directory) -> transport output. Pipeline input at 16 kHz for Whisper,
output at 8 kHz for the phone. One pipeline per call, as the template builds it. The bot says the
appliance's greeting first so that both systems' calls start the same way. GET /healthz: 200.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import uvicorn
from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import JSONResponse, Response
from google.genai.types import HttpOptions
from pipecat.audio.turn.smart_turn.local_smart_turn_v3 import LocalSmartTurnAnalyzerV3
from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.audio.vad.vad_analyzer import VADParams
from pipecat.frames.frames import TTSSpeakFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.runner import PipelineRunner
from pipecat.pipeline.task import PipelineParams, PipelineTask
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import (
    LLMContextAggregatorPair,
    LLMUserAggregatorParams,
)
from pipecat.runner.utils import parse_telephony_websocket
from pipecat.serializers.twilio import TwilioFrameSerializer
from pipecat.services.google.llm import GoogleLLMService
from pipecat.services.piper.tts import PiperTTSService
from pipecat.services.whisper.stt import WhisperSTTService
from pipecat.transcriptions.language import Language
from pipecat.transports.websocket.fastapi import FastAPIWebsocketParams, FastAPIWebsocketTransport
from pipecat.turns.user_stop import TurnAnalyzerUserTurnStopStrategy
from pipecat.turns.user_turn_strategies import UserTurnStrategies

SYSTEM = ("You are the friendly receptionist of Sunrise Appliances, a family-run shop in Tel Aviv "
          "that sells and repairs home appliances. You are warm, brief and practical. Your "
          "output is spoken on a phone call: no special characters.")


def build_app(args: argparse.Namespace) -> FastAPI:
    app = FastAPI()

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        return JSONResponse({"ready": True})

    @app.post("/voice-stream")
    async def voice(request: Request) -> Response:
        host = args.public_url.split("://", 1)[1]
        twiml = (f'<?xml version="1.0" encoding="UTF-8"?><Response><Connect>'
                 f'<Stream url="wss://{host}/ws"></Stream></Connect></Response>')
        return Response(content=twiml, media_type="application/xml")

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        _, call_data = await parse_telephony_websocket(websocket)
        await run_bot(websocket, call_data, args)

    return app


async def run_bot(websocket: WebSocket, call_data, args: argparse.Namespace) -> None:
    serializer = TwilioFrameSerializer(
        stream_sid=call_data["stream_id"], call_sid=call_data["call_id"],
        params=TwilioFrameSerializer.InputParams(auto_hang_up=False))
    transport = FastAPIWebsocketTransport(
        websocket=websocket,
        params=FastAPIWebsocketParams(audio_in_enabled=True, audio_out_enabled=True,
                                      add_wav_header=False, serializer=serializer))
    stt = WhisperSTTService(
        device="cpu", compute_type="int8",
        settings=WhisperSTTService.Settings(model=args.whisper, language=Language.EN))
    llm = GoogleLLMService(
        api_key=os.environ.get("GOOGLE_API_KEY", "bench-key"),
        settings=GoogleLLMService.Settings(model="gemini-2.5-flash"),
        http_options=HttpOptions(base_url=args.gemini_url))
    voice = Path(args.voice)
    tts = PiperTTSService(settings=PiperTTSService.Settings(voice=voice.stem),
                          download_dir=voice.parent)
    context = LLMContext([{"role": "system", "content": SYSTEM}])
    user_aggregator, assistant_aggregator = LLMContextAggregatorPair(
        context,
        user_params=LLMUserAggregatorParams(
            user_turn_strategies=UserTurnStrategies(
                stop=[TurnAnalyzerUserTurnStopStrategy(turn_analyzer=LocalSmartTurnAnalyzerV3())]),
            vad_analyzer=SileroVADAnalyzer(params=VADParams(stop_secs=0.2))))
    pipeline = Pipeline([transport.input(), stt, user_aggregator, llm, tts, transport.output(),
                         assistant_aggregator])
    task = PipelineTask(pipeline, params=PipelineParams(audio_in_sample_rate=16000,
                                                        audio_out_sample_rate=8000))

    @transport.event_handler("on_client_connected")
    async def on_client_connected(transport, client):
        await task.queue_frames([TTSSpeakFrame(args.greeting)])

    @transport.event_handler("on_client_disconnected")
    async def on_client_disconnected(transport, client):
        await task.cancel()

    await PipelineRunner(handle_sigint=False).run(task)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--public-url", required=True)
    parser.add_argument("--gemini-url", required=True)
    parser.add_argument("--whisper", required=True, help="CTranslate2 Whisper directory")
    parser.add_argument("--voice", required=True, help="Piper .onnx (its .onnx.json beside it)")
    parser.add_argument("--greeting", default="Hello, how can I help you today?")
    args = parser.parse_args()
    uvicorn.run(build_app(args), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
