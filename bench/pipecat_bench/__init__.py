"""pipecat 1.14 set up as its Twilio template, for the side-by-side turn-taking benchmark."""
