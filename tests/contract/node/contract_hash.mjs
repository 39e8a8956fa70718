// The config hash and the job hash of docs/CONTRACT.md, written from that document alone:
// Node's built-in crypto, no npm package, no Python. A normalized job is read as proto3 JSON
// (proto field names) or as the object @grpc/proto-loader gives with the options CONTRACT.md
// recommends: absent or null fields are their defaults, enums are names or numbers, int64 values
// strings, numbers or BigInts, doubles numbers or the strings "NaN", "Infinity", "-Infinity".

import { createHash } from "node:crypto";

export const ENCODING_VERSION = "stablenew.config.v1";

// Each hashed message with its fields and their proto types (CONTRACT.md, "The fields").
// Field order does not matter here: keys are sorted when an object is written.
const ENUMS = {
  StageType: { prefix: "STAGE_TYPE_", names: ["UNSPECIFIED", "TXT2IMG", "IMG2IMG", "ADETAILER", "UPSCALE"] },
  UpscaleMode: { prefix: "UPSCALE_MODE_", names: ["UNSPECIFIED", "EXTRAS", "IMG2IMG"] },
};

const MESSAGES = {
  NormalizedJob: {
    prompt: "string", negative_prompt: "string", stage_plan: "repeated StageType",
    seed: "int64", subseed: "int64", subseed_strength: "double", model: "string",
    vae: "string", sampler_name: "string", scheduler: "string", width: "int32",
    height: "int32", steps: "int32", cfg_scale: "double", batch_size: "int32",
    n_iter: "int32", clip_skip: "int32", hires_fix: "HiresFixConfig", refiner: "RefinerConfig",
    img2img: "Img2ImgConfig", adetailer_passes: "repeated AdetailerPass",
    upscale: "UpscaleConfig", input_images: "repeated string",
  },
  HiresFixConfig: {
    enabled: "bool", scale: "double", upscaler: "string", second_pass_steps: "int32",
    resize_x: "int32", resize_y: "int32", denoising_strength: "double", checkpoint: "string",
    sampler_name: "string", scheduler: "string", prompt: "string", negative_prompt: "string",
  },
  RefinerConfig: { enabled: "bool", checkpoint: "string", switch_at: "double" },
  Img2ImgConfig: {
    denoising_strength: "double", resize_mode: "int32", steps: "int32", cfg_scale: "double",
    sampler_name: "string", scheduler: "string",
  },
  AdetailerPass: {
    model: "string", prompt: "string", negative_prompt: "string", confidence: "double",
    mask_blur: "int32", dilate_erode: "int32", denoising_strength: "double",
    inpaint_only_masked: "bool", inpaint_padding: "int32", steps: "int32", cfg_scale: "double",
    sampler_name: "string",
  },
  UpscaleConfig: {
    mode: "UpscaleMode", upscaler: "string", factor: "double", denoising_strength: "double",
    upscaler_2: "string", upscaler_2_visibility: "double",
  },
};

// --- strings: a JSON string, UTF-8 as it is, only " \ and U+0000..U+001F escaped ----------------

const SHORT_ESCAPES = { '"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t" };

export function stringText(value) {
  let out = '"';
  for (const char of value) {
    const code = char.codePointAt(0);
    if (SHORT_ESCAPES[char] !== undefined) {
      out += SHORT_ESCAPES[char];
    } else if (code < 0x20) {
      out += "\\u" + code.toString(16).padStart(4, "0");
    } else {
      out += char;
    }
  }
  return out + '"';
}

// --- doubles: a JSON string holding the shortest round-trip digits in Python's layout -------------

// The shortest digits that read back as `magnitude` (> 0, finite) and the decimal exponent e of
// the first digit: magnitude = d1.d2d3... x 10^e. JavaScript's number-to-string gives those digits.
function shortestDigits(magnitude) {
  const [mantissa, exponentPart] = String(magnitude).split("e");
  const [whole, fraction = ""] = mantissa.split(".");
  const all = whole + fraction;
  const first = all.search(/[1-9]/);
  const digits = all.slice(first).replace(/0+$/, "");
  const exponent = whole.length - 1 - first + (exponentPart === undefined ? 0 : Number(exponentPart));
  return { digits, exponent };
}

export function doubleText(value) {
  if (Number.isNaN(value)) return "nan";
  if (value === Infinity) return "inf";
  if (value === -Infinity) return "-inf";
  const sign = value < 0 || Object.is(value, -0) ? "-" : "";
  if (value === 0) return sign + "0.0";
  const { digits, exponent } = shortestDigits(Math.abs(value));
  if (exponent < -4 || exponent >= 16) {
    const mantissa = digits.length > 1 ? digits[0] + "." + digits.slice(1) : digits;
    const exponentSign = exponent < 0 ? "-" : "+";
    return sign + mantissa + "e" + exponentSign + String(Math.abs(exponent)).padStart(2, "0");
  }
  if (exponent < 0) {
    return sign + "0." + "0".repeat(-exponent - 1) + digits;
  }
  const whole = digits.slice(0, exponent + 1).padEnd(exponent + 1, "0");
  const fraction = digits.slice(exponent + 1) || "0";
  return sign + whole + "." + fraction;
}

// --- values by proto type -----------------------------------------------------------------------

function toDouble(value) {
  if (value === undefined || value === null) return 0;
  return typeof value === "number" ? value : Number(value); // "NaN", "Infinity", "-Infinity", "7.5"
}

function integerText(value) {
  if (value === undefined || value === null) return "0";
  return BigInt(value).toString(); // exact for int64: never through a double
}

function enumText(type, value) {
  const { prefix, names } = ENUMS[type];
  if (value === undefined || value === null) return stringText(names[0]);
  const name = typeof value === "number" ? names[value] : value.startsWith(prefix) ? value.slice(prefix.length) : undefined;
  if (name === undefined || !names.includes(name)) {
    throw new Error(`${type}: unknown value ${value} (the services refuse it)`);
  }
  return stringText(name);
}

function valueText(type, value) {
  if (type.startsWith("repeated ")) {
    const item = type.slice("repeated ".length);
    return "[" + (value ?? []).map((element) => valueText(item, element)).join(",") + "]";
  }
  switch (type) {
    case "string": return stringText(value ?? "");
    case "bool": return value ? "true" : "false";
    case "int32":
    case "int64": return integerText(value);
    case "double": return stringText(doubleText(toDouble(value)));
    default:
      return type in ENUMS ? enumText(type, value) : messageText(type, value ?? {});
  }
}

// Every field of the message, set or not, keys sorted by code point, no whitespace.
function messageText(type, message) {
  const fields = MESSAGES[type];
  const keys = Object.keys(fields).sort();
  return "{" + keys.map((key) => stringText(key) + ":" + valueText(fields[key], message[key])).join(",") + "}";
}

// --- the two hashes -----------------------------------------------------------------------------

export function canonicalEncoding(job) {
  return '{"encoding":' + stringText(ENCODING_VERSION) + ',"job":' + messageText("NormalizedJob", job) + "}";
}

export function sha256Hex(text) {
  return createHash("sha256").update(text, "utf8").digest("hex");
}

export function configHash(job) {
  return sha256Hex(canonicalEncoding(job));
}

export function jobHash(entryHashes) {
  return sha256Hex(entryHashes.join("\n"));
}
