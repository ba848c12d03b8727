// gim view: a small point-cloud viewer, inlined into the page by gim_plugins/view/page.py.
// Draws the dense cloud, the sparse points and the camera frusta with WebGL (orbit: drag; pan: shift-drag or
// right-drag; zoom: wheel; reset: double-click). Without WebGL (or with ?renderer=2d) it draws the same scene on a
// 2D canvas with a z-buffer, so the page works in any browser. Data: the JSON block #gim-data (positions quantised
// to uint16 over the bounding box, colours uint8, both base64), written by page.py.
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("gim-data").textContent);
  var canvas = document.getElementById("gim-canvas");
  var statusBox = document.getElementById("gim-status");
  var BACKGROUND = [30 / 255, 30 / 255, 34 / 255];

  function bytes(text) {
    var bin = atob(text || "");
    var out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }

  function cloud(block) {
    if (!block || !block.n) return null;
    var raw = bytes(block.pos);
    var q = new Uint16Array(raw.buffer, raw.byteOffset, raw.byteLength / 2);
    var lo = data.bbox.min, step = data.bbox.step;
    var pos = new Float32Array(q.length);
    for (var i = 0; i < q.length; i++) pos[i] = lo[i % 3] + q[i] * step[i % 3];
    return { n: block.n, pos: pos, rgb: bytes(block.rgb) };
  }

  function lines(block) {
    if (!block || !block.n) return null;
    var raw = bytes(block.pos);
    return { n: block.n, pos: new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4),
             rgb: bytes(block.rgb) };
  }

  var layers = { dense: cloud(data.dense), sparse: cloud(data.sparse), cameras: lines(data.cameras) };
  var view = data.view;

  // ----------------------------------------------------------------------------------------------- camera
  var state = {};
  function reset() {
    state = { yaw: 0, pitch: 0, distance: view.distance, target: view.target.slice(), size: 2.0 };
  }
  reset();

  function add(a, b, s) { return [a[0] + s * b[0], a[1] + s * b[1], a[2] + s * b[2]]; }
  function cross(a, b) { return [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]; }
  function norm(a) { var l = Math.hypot(a[0], a[1], a[2]) || 1; return [a[0] / l, a[1] / l, a[2] / l]; }
  function dot(a, b) { return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]; }

  // eye frame after orbiting: back = direction from the target to the eye
  function frame() {
    var cp = Math.cos(state.pitch), sp = Math.sin(state.pitch), cy = Math.cos(state.yaw), sy = Math.sin(state.yaw);
    var back = norm(add(add(view.right.map(function (v) { return v * cp * sy; }), view.up, sp),
                        view.back, cp * cy));
    var right = norm(cross(view.up, back));
    if (!isFinite(right[0]) || Math.hypot(right[0], right[1], right[2]) < 1e-6) right = view.right;
    var up = cross(back, right);
    return { right: right, up: up, back: back, eye: add(state.target, back, state.distance) };
  }

  // column-major 4x4: projection * view
  function matrix(aspect) {
    var f = frame(), e = f.eye;
    var near = state.distance * 0.01, far = state.distance * 20 + view.radius * 4;
    var t = 1 / Math.tan(view.fov / 2);
    var a = (far + near) / (near - far), b = 2 * far * near / (near - far);
    var V = [f.right[0], f.up[0], f.back[0], 0, f.right[1], f.up[1], f.back[1], 0,
             f.right[2], f.up[2], f.back[2], 0, -dot(f.right, e), -dot(f.up, e), -dot(f.back, e), 1];
    var P = [t / aspect, 0, 0, 0, 0, t, 0, 0, 0, 0, a, -1, 0, 0, b, 0];
    var M = new Float32Array(16);
    for (var c = 0; c < 4; c++) for (var r = 0; r < 4; r++) {
      var s = 0;
      for (var k = 0; k < 4; k++) s += P[k * 4 + r] * V[c * 4 + k];
      M[c * 4 + r] = s;
    }
    return M;
  }

  function visible(name) {
    var box = document.getElementById("show-" + name);
    return !box || box.checked;
  }

  // ------------------------------------------------------------------------------------------------ WebGL
  function webglRenderer() {
    var gl = canvas.getContext("webgl", { antialias: true, preserveDrawingBuffer: true });
    if (!gl) return null;
    function shader(type, source) {
      var s = gl.createShader(type);
      gl.shaderSource(s, source);
      gl.compileShader(s);
      if (!gl.getShaderParameter(s, gl.COMPILE_STATUS)) throw new Error(gl.getShaderInfoLog(s));
      return s;
    }
    var program = gl.createProgram();
    gl.attachShader(program, shader(gl.VERTEX_SHADER,
      "attribute vec3 p; attribute vec3 c; uniform mat4 m; uniform float size; varying vec3 v;" +
      "void main() { gl_Position = m * vec4(p, 1.0); gl_PointSize = size; v = c; }"));
    gl.attachShader(program, shader(gl.FRAGMENT_SHADER,
      "precision mediump float; varying vec3 v; void main() { gl_FragColor = vec4(v, 1.0); }"));
    gl.linkProgram(program);
    if (!gl.getProgramParameter(program, gl.LINK_STATUS)) throw new Error(gl.getProgramInfoLog(program));
    var loc = { p: gl.getAttribLocation(program, "p"), c: gl.getAttribLocation(program, "c"),
                m: gl.getUniformLocation(program, "m"), size: gl.getUniformLocation(program, "size") };
    var buffers = {};
    Object.keys(layers).forEach(function (name) {
      var layer = layers[name];
      if (!layer) return;
      var pos = gl.createBuffer();
      gl.bindBuffer(gl.ARRAY_BUFFER, pos);
      gl.bufferData(gl.ARRAY_BUFFER, layer.pos, gl.STATIC_DRAW);
      var rgb = gl.createBuffer();
      gl.bindBuffer(gl.ARRAY_BUFFER, rgb);
      gl.bufferData(gl.ARRAY_BUFFER, layer.rgb, gl.STATIC_DRAW);
      buffers[name] = { pos: pos, rgb: rgb, n: layer.pos.length / 3 };
    });
    gl.enable(gl.DEPTH_TEST);
    return {
      kind: "WebGL",
      draw: function () {
        gl.viewport(0, 0, canvas.width, canvas.height);
        gl.clearColor(BACKGROUND[0], BACKGROUND[1], BACKGROUND[2], 1);
        gl.clear(gl.COLOR_BUFFER_BIT | gl.DEPTH_BUFFER_BIT);
        gl.useProgram(program);
        gl.uniformMatrix4fv(loc.m, false, matrix(canvas.width / canvas.height));
        [["dense", gl.POINTS, state.size], ["sparse", gl.POINTS, state.size + 1], ["cameras", gl.LINES, 1]]
          .forEach(function (item) {
            var b = buffers[item[0]];
            if (!b || !visible(item[0])) return;
            gl.uniform1f(loc.size, item[2]);
            gl.bindBuffer(gl.ARRAY_BUFFER, b.pos);
            gl.enableVertexAttribArray(loc.p);
            gl.vertexAttribPointer(loc.p, 3, gl.FLOAT, false, 0, 0);
            gl.bindBuffer(gl.ARRAY_BUFFER, b.rgb);
            gl.enableVertexAttribArray(loc.c);
            gl.vertexAttribPointer(loc.c, 3, gl.UNSIGNED_BYTE, true, 0, 0);
            gl.drawArrays(item[1], 0, b.n);
          });
      }
    };
  }

  // ------------------------------------------------------------------------------------- 2D canvas fallback
  function canvasRenderer() {
    var ctx = canvas.getContext("2d");
    return {
      kind: "2D canvas",
      draw: function () {
        var w = canvas.width, h = canvas.height, M = matrix(w / h);
        var image = ctx.createImageData(w, h), px = image.data, depth = new Float32Array(w * h);
        depth.fill(Infinity);
        for (var i = 0; i < w * h; i++) {
          px[4 * i] = BACKGROUND[0] * 255; px[4 * i + 1] = BACKGROUND[1] * 255; px[4 * i + 2] = BACKGROUND[2] * 255;
          px[4 * i + 3] = 255;
        }
        var radius = Math.max(1, Math.round(state.size / 2));
        ["dense", "sparse"].forEach(function (name) {
          var layer = layers[name];
          if (!layer || !visible(name)) return;
          var pos = layer.pos, rgb = layer.rgb, n = pos.length / 3;
          for (var k = 0; k < n; k++) {
            var x = pos[3 * k], y = pos[3 * k + 1], z = pos[3 * k + 2];
            var cw = M[3] * x + M[7] * y + M[11] * z + M[15];
            if (cw <= 0) continue;
            var u = Math.round(((M[0] * x + M[4] * y + M[8] * z + M[12]) / cw + 1) * w / 2);
            var v = Math.round((1 - (M[1] * x + M[5] * y + M[9] * z + M[13]) / cw) * h / 2);
            for (var dy = 0; dy < radius; dy++) for (var dx = 0; dx < radius; dx++) {
              var uu = u + dx, vv = v + dy;
              if (uu < 0 || vv < 0 || uu >= w || vv >= h) continue;
              var at = vv * w + uu;
              if (cw >= depth[at]) continue;
              depth[at] = cw;
              px[4 * at] = rgb[3 * k]; px[4 * at + 1] = rgb[3 * k + 1]; px[4 * at + 2] = rgb[3 * k + 2];
            }
          }
        });
        ctx.putImageData(image, 0, 0);
        var lineLayer = layers.cameras;
        if (!lineLayer || !visible("cameras")) return;
        ctx.lineWidth = 1;
        for (var s = 0; s + 1 < lineLayer.pos.length / 3; s += 2) {
          var ends = [s, s + 1].map(function (k) {
            var p = lineLayer.pos, x = p[3 * k], y = p[3 * k + 1], z = p[3 * k + 2];
            var cw = M[3] * x + M[7] * y + M[11] * z + M[15];
            return [((M[0] * x + M[4] * y + M[8] * z + M[12]) / cw + 1) * w / 2,
                    (1 - (M[1] * x + M[5] * y + M[9] * z + M[13]) / cw) * h / 2, cw];
          });
          if (ends[0][2] <= 0 || ends[1][2] <= 0) continue;
          var c = lineLayer.rgb;
          ctx.strokeStyle = "rgb(" + c[3 * s] + "," + c[3 * s + 1] + "," + c[3 * s + 2] + ")";
          ctx.beginPath();
          ctx.moveTo(ends[0][0], ends[0][1]);
          ctx.lineTo(ends[1][0], ends[1][1]);
          ctx.stroke();
        }
      }
    };
  }

  // ---------------------------------------------------------------------------------------------- wiring
  var renderer = null;
  try {  // page.html?renderer=2d forces the fallback (old machines, tests)
    renderer = /[?&]renderer=2d\b/.test(window.location.search) ? null : webglRenderer();
  } catch (error) {
    renderer = null;
    statusBox.dataset.webglError = String(error);
  }
  if (!renderer) renderer = canvasRenderer();
  var pending = false;
  function redraw() {
    if (pending) return;
    pending = true;
    window.requestAnimationFrame(function () {
      pending = false;
      renderer.draw();
    });
  }
  function resize() {
    var box = canvas.getBoundingClientRect();
    var ratio = window.devicePixelRatio || 1;
    canvas.width = Math.max(1, Math.round(box.width * ratio));
    canvas.height = Math.max(1, Math.round(box.height * ratio));
    redraw();
  }

  var drag = null;
  canvas.addEventListener("contextmenu", function (event) { event.preventDefault(); });
  canvas.addEventListener("pointerdown", function (event) {
    drag = { x: event.clientX, y: event.clientY, pan: event.shiftKey || event.button === 2 };
    canvas.setPointerCapture(event.pointerId);
  });
  canvas.addEventListener("pointerup", function () { drag = null; });
  canvas.addEventListener("pointermove", function (event) {
    if (!drag) return;
    var dx = event.clientX - drag.x, dy = event.clientY - drag.y;
    drag.x = event.clientX; drag.y = event.clientY;
    if (drag.pan) {
      var f = frame(), scale = state.distance * 2 * Math.tan(view.fov / 2) / canvas.clientHeight;
      state.target = add(add(state.target, f.right, -dx * scale), f.up, dy * scale);
    } else {
      state.yaw -= dx * 0.005;
      state.pitch = Math.max(-1.5, Math.min(1.5, state.pitch + dy * 0.005));
    }
    redraw();
  });
  canvas.addEventListener("wheel", function (event) {
    event.preventDefault();
    state.distance *= Math.exp(event.deltaY * 0.001);
    redraw();
  }, { passive: false });
  canvas.addEventListener("dblclick", function () { reset(); redraw(); });
  ["dense", "sparse", "cameras"].forEach(function (name) {
    var box = document.getElementById("show-" + name);
    if (box) box.addEventListener("change", redraw);
  });
  var slider = document.getElementById("point-size");
  if (slider) slider.addEventListener("input", function () { state.size = Number(slider.value); redraw(); });
  window.addEventListener("resize", resize);

  resize();
  renderer.draw();
  var counts = ["dense", "sparse"].map(function (name) { return layers[name] ? layers[name].n : 0; });
  statusBox.textContent = renderer.kind + ": " + counts[0] + " dense points, " + counts[1] + " sparse points, " +
    (data.camera_count || 0) + " cameras";
  statusBox.dataset.renderer = renderer.kind;
  document.body.dataset.ready = "1";
})();
