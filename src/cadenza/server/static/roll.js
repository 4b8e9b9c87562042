// A piano roll on a canvas: x = seconds, y = pitch, one colour per instrument, bar lines and
// numbers on a strip at the top (drag there to select bars), a playback cursor.

const NAMES = ["C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"];
export const noteName = (p) => `${NAMES[p % 12]}${Math.floor(p / 12) - 1}`;

const PALETTE = ["#3d5afe", "#e65100", "#2e7d32", "#c2185b", "#6a1b9a", "#00838f", "#9e7700", "#5d4037",
                 "#1565c0", "#ad1457", "#558b2f", "#4527a0"];
const DRUM_COLOR = "#546e7a";
const STRIP = 22, KEYS = 34, PAD = 6;

export class Roll {
  constructor(canvas, { strip = true, beats = false, onSelect = null, onPlotClick = null, onHover = null } = {}) {
    this.canvas = canvas;
    this.strip = strip ? STRIP : 0;
    this.beats = beats;
    this.onSelect = onSelect;
    this.onPlotClick = onPlotClick;
    this.onHover = onHover;
    this.onChange = null;
    this.notes = [];
    this.takeId = null;
    this.barStarts = [0];
    this.meter = "4/4";
    this.span = 0;
    this.lo = 55; this.hi = 79;
    this.selection = null;
    this.cursor = null;
    this.hover = null;
    this.highlight = null;
    this.colors = new Map();
    this.grid = null; // while streaming: {barLen, expectedEnd, fixedTempo, quarters}
    this._pending = false;
    this._drag = null;
    this._bind();
    if ("ResizeObserver" in window) new ResizeObserver(() => this.resize()).observe(canvas);
    this.resize();
  }

  // -- content ------------------------------------------------------------------------------
  setTake(take, { keepCursor = false } = {}) {
    this.grid = null;
    this.takeId = take ? take.id : null;
    this.meter = take ? take.meter : "4/4";
    this.barStarts = take && take.bar_starts.length ? take.bar_starts.slice() : [0];
    this._setNotes(take ? take.notes : [], take ? Math.max(take.seconds, this.barStarts[this.barStarts.length - 1]) : 0);
    if (!keepCursor) this.cursor = null;
  }

  setNotes(notes, { highlight = null } = {}) {
    this.highlight = highlight;
    this._setNotes(notes, null, true);
  }

  _setNotes(notes, span, keepGrid = false) {
    this.notes = notes.slice();
    this.colors = new Map();
    for (const n of this.notes) this._color(n);
    this._fitPitch(true);
    if (!keepGrid || !this.grid) this.span = span ?? this._contentEnd();
    else this._extendGrid();
    if (!keepGrid) this.highlight = null;
    this.draw();
    if (this.onChange) this.onChange();
  }

  startStream(base, grid) {
    this.takeId = null;
    this.meter = grid.meter || "4/4";
    this.barStarts = grid.barStarts && grid.barStarts.length ? grid.barStarts.slice() : [0];
    this.grid = { barLen: grid.barLen || 2, expectedEnd: grid.expectedEnd || 0, fixedTempo: !!grid.fixedTempo,
                  quarters: grid.quarters || 4, known: this.barStarts.length, refined: false };
    this.cursor = null;
    this.highlight = null;
    this.notes = base.slice();
    this.colors = new Map();
    for (const n of this.notes) this._color(n);
    this._fitPitch(true);
    this.span = 0;
    this._extendGrid();
    this.draw();
    if (this.onChange) this.onChange();
  }

  addNote(n) {
    this.notes.push(n);
    const fresh = !this.colors.has(this._key(n));
    this._color(n);
    const g = this.grid;
    if (g && !g.fixedTempo && !g.refined && n.beats > 0.05 && n.duration > 0) {
      // the model chose the tempo: the notes' own beat length gives the bar length
      g.barLen = (n.duration / n.beats) * g.quarters;
      g.refined = true;
      this.barStarts = this.barStarts.slice(0, g.known);
    }
    this._fitPitch(false);
    this._extendGrid();
    this.draw();
    if (fresh && this.onChange) this.onChange();
  }

  endStream() {
    this.grid = null;
  }

  _extendGrid() {
    const g = this.grid;
    const want = Math.max(g ? g.expectedEnd : 0, this._contentEnd());
    if (g) {
      let last = this.barStarts[this.barStarts.length - 1];
      let k = 0;
      while (last < want - 1e-6 && k++ < 2000) {
        last += g.barLen;
        this.barStarts.push(last);
      }
    }
    this.span = Math.max(this.span, want, this.barStarts[this.barStarts.length - 1]);
  }

  _contentEnd() {
    let e = 0;
    for (const n of this.notes) e = Math.max(e, n.start + n.duration);
    return e;
  }

  end() {
    return Math.max(this._contentEnd(), 0);
  }

  _key(n) { return n.drum ? "drums" : n.instrument || `program ${n.program}`; }

  _color(n) {
    const k = this._key(n);
    if (!this.colors.has(k)) this.colors.set(k, n.drum ? DRUM_COLOR : PALETTE[[...this.colors.keys()].filter((x) => x !== "drums").length % PALETTE.length]);
    return this.colors.get(k);
  }

  legend() { return [...this.colors.entries()]; }

  _fitPitch(reset) {
    let lo = reset ? Infinity : this.lo, hi = reset ? -Infinity : this.hi;
    for (const n of this.notes) { lo = Math.min(lo, n.pitch - 1); hi = Math.max(hi, n.pitch + 1); }
    if (!Number.isFinite(lo)) { lo = 55; hi = 79; }
    if (hi - lo < 24) { const mid = Math.round((lo + hi) / 2); lo = mid - 12; hi = mid + 12; }
    this.lo = lo; this.hi = hi;
  }

  setSelection(a, b) {
    this.selection = a == null ? null : [a, b];
    this.draw();
  }

  setCursor(t) {
    this.cursor = t;
    this.draw();
  }

  setHover(range) {
    this.hover = range;
    this.draw();
  }

  // -- geometry -----------------------------------------------------------------------------
  _box() {
    const w = this.canvas.clientWidth, h = this.canvas.clientHeight;
    return { w, h, x0: KEYS, x1: w - PAD, y0: this.strip + 2, y1: h - PAD };
  }

  _x(t, b) { return b.x0 + (t / Math.max(this.span, 1e-6)) * (b.x1 - b.x0); }
  _t(x, b) { return ((x - b.x0) / (b.x1 - b.x0)) * Math.max(this.span, 1e-6); }
  _row(b) { return (b.y1 - b.y0) / (this.hi - this.lo + 1); }
  _y(p, b) { return b.y0 + (this.hi - p) * this._row(b); }

  _barAt(t) {
    const bs = this.barStarts;
    let k = 0;
    while (k + 1 < bs.length && bs[k + 1] <= t) k++;
    return Math.min(k + 1, Math.max(1, bs.length - 1));
  }

  _barRange(a, b) {
    const bs = this.barStarts;
    const len = bs.length > 1 ? bs[bs.length - 1] - bs[bs.length - 2] : 2;
    const at = (i) => (i < bs.length ? bs[i] : bs[bs.length - 1] + (i - bs.length + 1) * len);
    return [at(a - 1), at(b)];
  }

  // -- drawing ------------------------------------------------------------------------------
  resize() {
    const dpr = window.devicePixelRatio || 1;
    const w = this.canvas.clientWidth, h = this.canvas.clientHeight;
    if (!w || !h) return;
    if (this.canvas.width !== Math.round(w * dpr) || this.canvas.height !== Math.round(h * dpr)) {
      this.canvas.width = Math.round(w * dpr);
      this.canvas.height = Math.round(h * dpr);
    }
    this._draw();
  }

  draw() {
    if (this._pending) return;
    this._pending = true;
    requestAnimationFrame(() => { this._pending = false; this._draw(); });
  }

  _draw() {
    const c = this.canvas;
    const b = this._box();
    if (!b.w || !b.h) return;
    const dpr = window.devicePixelRatio || 1;
    if (c.width !== Math.round(b.w * dpr)) { c.width = Math.round(b.w * dpr); c.height = Math.round(b.h * dpr); }
    const g = c.getContext("2d");
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, b.w, b.h);
    g.font = "11px system-ui, sans-serif";
    const row = this._row(b);

    // pitch rows: black keys shaded, C labelled
    for (let p = this.lo; p <= this.hi; p++) {
      const y = this._y(p, b);
      if ([1, 3, 6, 8, 10].includes(((p % 12) + 12) % 12)) { g.fillStyle = "#f3f2ee"; g.fillRect(b.x0, y, b.x1 - b.x0, row); }
      if (p % 12 === 0) {
        g.fillStyle = "#98a2b3"; g.textAlign = "right";
        g.fillText(noteName(p), b.x0 - 4, y + row / 2 + 4);
        g.strokeStyle = "#e4e2dc"; g.beginPath(); g.moveTo(b.x0, y + row); g.lineTo(b.x1, y + row); g.stroke();
      }
    }

    if (!this.notes.length && !this.grid) {
      g.fillStyle = "#98a2b3"; g.textAlign = "center";
      g.fillText("No notes yet: upload or type a seed, or press Generate.", (b.x0 + b.x1) / 2, (b.y0 + b.y1) / 2);
    }

    // selection and hover
    if (this.selection && this.notes.length) {
      const [s, e] = this._barRange(...this.selection);
      g.fillStyle = "rgba(61, 90, 254, .13)";
      g.fillRect(this._x(s, b), 0, this._x(e, b) - this._x(s, b), b.y1);
    }
    if (this.hover) {
      g.fillStyle = "rgba(255, 193, 7, .22)";
      g.fillRect(this._x(this.hover[0], b), b.y0, this._x(this.hover[1], b) - this._x(this.hover[0], b), b.y1 - b.y0);
    }

    // bars (and beats) with numbers on the strip
    const bs = this.barStarts;
    const [num, den] = (/^(\d+)\/(\d+)$/.exec(this.meter || "") || [0, 4, 4]).slice(1).map(Number);
    const beats = den === 8 && num % 3 === 0 && num > 3 ? num / 3 : num;
    const step = Math.max(1, Math.ceil(bs.length / Math.max(1, (b.x1 - b.x0) / 28)));
    for (let k = 0; k < bs.length; k++) {
      const x = this._x(bs[k], b);
      if (x > b.x1 + 0.5) break;
      g.strokeStyle = "#c9c6bd"; g.lineWidth = 1;
      g.beginPath(); g.moveTo(x + 0.5, b.y0); g.lineTo(x + 0.5, b.y1); g.stroke();
      if (k + 1 < bs.length) {
        const w = this._x(bs[k + 1], b) - x;
        if (w / beats > 14) {
          g.strokeStyle = "#ecebe6";
          for (let j = 1; j < beats; j++) { const xb = x + (w * j) / beats; g.beginPath(); g.moveTo(xb + 0.5, b.y0); g.lineTo(xb + 0.5, b.y1); g.stroke(); }
        }
        if (this.strip && k % step === 0) {
          g.fillStyle = "#667085"; g.textAlign = "left";
          g.fillText(String(k + 1), x + 3, 15);
        }
      }
    }
    if (this.strip) {
      g.strokeStyle = "#d9d6cf";
      g.beginPath(); g.moveTo(0, this.strip + 0.5); g.lineTo(b.w, this.strip + 0.5); g.stroke();
    }

    // notes
    const h = Math.max(2, row - 1);
    for (const n of this.notes) {
      const x = this._x(n.start, b), y = this._y(n.pitch, b);
      const w = Math.max(2, this._x(n.start + n.duration, b) - x - 0.5);
      g.globalAlpha = 0.55 + 0.45 * Math.min(1, (n.velocity || 80) / 110);
      g.fillStyle = this._color(n);
      if (n.drum) { g.fillRect(x, y, Math.min(w, 4), h); } else g.fillRect(x, y, w, h);
    }
    g.globalAlpha = 1;
    if (this.highlight) {
      const n = this.highlight;
      const x = this._x(n.start, b), y = this._y(n.pitch, b);
      const w = Math.max(4, this._x(n.start + n.duration, b) - x);
      g.strokeStyle = "#c62828"; g.lineWidth = 2;
      g.strokeRect(x - 2, y - 2, w + 4, h + 4);
      g.fillStyle = "#c62828"; g.textAlign = "left";
      g.fillText(n.name || noteName(n.pitch), Math.min(x + w + 5, b.x1 - 24), y + h);
      g.lineWidth = 1;
    }

    // playback cursor
    if (this.cursor != null && this.span > 0) {
      const x = this._x(this.cursor, b);
      g.strokeStyle = "#d32f2f"; g.lineWidth = 2;
      g.beginPath(); g.moveTo(x, 0); g.lineTo(x, b.y1); g.stroke();
      g.lineWidth = 1;
    }
  }

  // -- input --------------------------------------------------------------------------------
  _bind() {
    const c = this.canvas;
    const pos = (e) => { const r = c.getBoundingClientRect(); return [e.clientX - r.left, e.clientY - r.top]; };
    c.addEventListener("pointerdown", (e) => {
      const [x, y] = pos(e);
      const b = this._box();
      if (x < b.x0 || x > b.x1) return;
      const t = this._t(x, b);
      if (this.strip && y <= this.strip && this.onSelect && this.notes.length) {
        const bar = this._barAt(t);
        this._drag = bar;
        c.setPointerCapture(e.pointerId);
        this.setSelection(bar, bar);
      } else if (this.onPlotClick && y > this.strip) {
        this.onPlotClick(t);
      }
    });
    c.addEventListener("pointermove", (e) => {
      const [x, y] = pos(e);
      const b = this._box();
      const t = this._t(Math.max(b.x0, Math.min(b.x1, x)), b);
      if (this._drag != null) {
        const bar = this._barAt(t);
        this.setSelection(Math.min(this._drag, bar), Math.max(this._drag, bar));
        return;
      }
      c.style.cursor = this.strip && y <= this.strip && this.onSelect ? "col-resize" : this.onPlotClick ? "pointer" : "default";
      if (this.onHover) this.onHover(x >= b.x0 && x <= b.x1 && y > this.strip ? t : null);
    });
    const up = () => {
      if (this._drag == null) return;
      this._drag = null;
      if (this.selection && this.onSelect) this.onSelect(...this.selection);
    };
    c.addEventListener("pointerup", up);
    c.addEventListener("pointercancel", up);
    c.addEventListener("pointerleave", () => { if (this.onHover) this.onHover(null); });
  }
}
