// Playback: notes synthesized in the browser with Tone.js (window.Tone, vendor/Tone.js), scheduled
// on Tone's transport so that notes still arriving from a generation join a playback in progress;
// or the server's SoundFont rendering (a WAV) in an <audio> element. Without working audio
// (no Tone, or an audio context that will not start) the cursor still runs on the page's clock.

const hz = (p) => 440 * 2 ** ((p - 69) / 12);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const KICKS = new Set([35, 36, 41, 43, 45, 47, 48, 50]);
const HATS = new Set([42, 44, 46]);
const CYMBALS = new Set([49, 51, 52, 53, 55, 57, 59]);

function family(program) {
  if (program < 8) return "keys";
  if (program < 16) return "mallet";
  if (program < 24) return "organ";
  if (program < 32 || (program >= 104 && program < 108) || program === 45 || program === 46) return "pluck";
  if (program < 40) return "bass";
  if (program < 56 || (program >= 88 && program < 96)) return "strings";
  if (program < 64) return "brass";
  if (program < 72) return "reed";
  if (program < 80) return "pipe";
  if (program < 88) return "lead";
  return "keys";
}

const VOICES = {
  keys: { osc: "triangle", env: { attack: 0.004, decay: 0.9, sustain: 0.12, release: 0.7 }, vol: -8 },
  mallet: { osc: "sine", env: { attack: 0.001, decay: 0.6, sustain: 0, release: 0.6 }, vol: -6 },
  organ: { osc: "triangle", env: { attack: 0.02, decay: 0.1, sustain: 0.9, release: 0.15 }, vol: -12 },
  pluck: { osc: "triangle", env: { attack: 0.002, decay: 0.5, sustain: 0.05, release: 0.3 }, vol: -8 },
  bass: { osc: "square", env: { attack: 0.005, decay: 0.25, sustain: 0.5, release: 0.15 }, vol: -18 },
  strings: { osc: "sawtooth", env: { attack: 0.09, decay: 0.2, sustain: 0.8, release: 0.5 }, vol: -22 },
  brass: { osc: "sawtooth", env: { attack: 0.03, decay: 0.2, sustain: 0.7, release: 0.2 }, vol: -20 },
  reed: { osc: "square", env: { attack: 0.02, decay: 0.2, sustain: 0.7, release: 0.2 }, vol: -20 },
  pipe: { osc: "sine", env: { attack: 0.03, decay: 0.1, sustain: 0.85, release: 0.2 }, vol: -6 },
  lead: { osc: "square", env: { attack: 0.01, decay: 0.1, sustain: 0.7, release: 0.2 }, vol: -20 },
};

export class Player {
  constructor(audio) {
    this.audio = audio;
    this.playing = false;
    this.roll = null;      // the piano roll whose notes are playing (it draws the cursor)
    this.offset = 0;       // where a paused playback resumes
    this.end = 0;
    this.mode = "synth";   // or "wav"
    this.silent = false;
    this.onEnded = null;
    this._t0 = 0;
    this._synths = new Map();
    this._noise = [];
    this._noiseNext = 0;
    this._out = null;
    audio.addEventListener("ended", () => { if (this.mode === "wav" && this.playing && this.onEnded) this.onEnded(); });
  }

  get Tone() { return window.Tone || null; }

  async _audioOn() {
    const T = this.Tone;
    if (!T) return false;
    try {
      await Promise.race([T.start(), sleep(1500)]);
    } catch {
      return false;
    }
    return T.getContext().state === "running";
  }

  async play(roll, notes, from, end, wavUrl = null) {
    this.stop();
    this.roll = roll;
    this.end = end;
    this.offset = from;
    if (wavUrl) {
      this.mode = "wav";
      this.silent = false;
      if (this.audio.getAttribute("src") !== wavUrl) this.audio.src = wavUrl;
      this.audio.currentTime = from;
      await this.audio.play();
      this.playing = true;
      return;
    }
    this.mode = "synth";
    const ok = await this._audioOn();
    this.silent = !ok;
    this._t0 = performance.now() / 1000 - from;
    this.playing = true;
    if (!ok) return;
    const tr = this.Tone.getTransport();
    tr.stop();
    tr.cancel(0);
    tr.seconds = from;
    for (const n of notes) if (n.start >= from - 1e-3) this._schedule(n);
    tr.start("+0.05");
  }

  position() {
    if (!this.playing) return this.offset;
    if (this.mode === "wav") return this.audio.currentTime;
    if (this.silent) return performance.now() / 1000 - this._t0;
    return Math.max(0, this.Tone.getTransport().seconds);
  }

  pause() {
    this.stop();
  }

  stop() {
    if (!this.playing) return;
    this.offset = this.position();
    this.playing = false;
    if (this.mode === "wav") {
      this.audio.pause();
      return;
    }
    if (this.silent) return;
    const tr = this.Tone.getTransport();
    tr.stop();
    tr.cancel(0);
    for (const s of this._synths.values()) if (s.releaseAll) s.releaseAll();
  }

  reset() {
    this.offset = 0;
  }

  // a note that just arrived from a generation, while its roll plays
  add(roll, n) {
    if (!this.playing || roll !== this.roll) return;
    this.end = Math.max(this.end, n.start + n.duration);
    if (this.mode !== "synth" || this.silent) return;
    if (n.start >= this.position() - 0.02) this._schedule(n);
  }

  // the finished take's notes replace the streamed ones from a little ahead of now on
  update(roll, notes, end) {
    if (!this.playing || roll !== this.roll) return;
    this.end = end;
    if (this.mode !== "synth" || this.silent) return;
    const at = this.position() + 0.15;
    this.Tone.getTransport().cancel(at);
    for (const n of notes) if (n.start >= at) this._schedule(n);
  }

  // one note now (the on-screen keyboard, the learn view)
  blip(pitch, program = 0, drum = false) {
    const T = this.Tone;
    if (!T || (this.playing && this.mode === "synth")) return;
    T.start().then(() => {
      if (T.getContext().state !== "running") return;
      this._trigger({ pitch, program, drum, duration: 0.35, velocity: 90 }, T.now() + 0.01);
    }).catch(() => {});
  }

  _schedule(n) {
    const tr = this.Tone.getTransport();
    tr.schedule((time) => this._trigger(n, time), n.start);
  }

  _output() {
    const T = this.Tone;
    if (!this._out) this._out = new T.Compressor({ threshold: -18, ratio: 4 }).toDestination();
    return this._out;
  }

  _trigger(n, time) {
    const T = this.Tone;
    const vel = Math.max(0.05, Math.min(1, (n.velocity || 80) / 127));
    const dur = Math.max(0.05, n.duration);
    try {
      if (n.drum) {
        if (KICKS.has(n.pitch)) {
          this._synth("kick").triggerAttackRelease(KICKS.has(n.pitch) && n.pitch <= 36 ? 50 : hz(n.pitch - 12), 0.2, time, vel);
        } else {
          const s = this._noiseVoice(HATS.has(n.pitch) ? 0.05 : CYMBALS.has(n.pitch) ? 0.6 : 0.15);
          s.triggerAttackRelease(0.05, time, vel * 0.7);
        }
        return;
      }
      this._synth(family(n.program)).triggerAttackRelease(hz(n.pitch), dur, time, vel);
    } catch (e) {
      // a voice that could not start (e.g. two hits at one instant): skip that note
    }
  }

  _synth(kind) {
    let s = this._synths.get(kind);
    if (s) return s;
    const T = this.Tone;
    if (kind === "kick") {
      s = new T.PolySynth(T.MembraneSynth, { envelope: { attack: 0.001, decay: 0.3, sustain: 0, release: 0.1 } });
      s.volume.value = -6;
    } else {
      const v = VOICES[kind] || VOICES.keys;
      s = new T.PolySynth(T.Synth, { oscillator: { type: v.osc }, envelope: v.env });
      s.maxPolyphony = 48;
      s.volume.value = v.vol;
    }
    s.connect(this._output());
    this._synths.set(kind, s);
    return s;
  }

  _noiseVoice(decay) {
    const T = this.Tone;
    if (!this._noise.length) {
      for (let k = 0; k < 4; k++) {
        const s = new T.NoiseSynth({ noise: { type: "white" }, envelope: { attack: 0.001, decay: 0.15, sustain: 0 } });
        s.volume.value = -18;
        s.connect(this._output());
        this._noise.push(s);
      }
    }
    const s = this._noise[this._noiseNext++ % this._noise.length];
    s.envelope.decay = decay;
    return s;
  }
}
