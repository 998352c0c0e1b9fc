//! A minimal, safe pickle reader: enough of the pickle virtual machine to
//! load the CIFAR python distributions (Python 2 cPickle protocol-2
//! dictionaries whose `data` is a numpy `uint8` array) and the same
//! dictionaries re-pickled by Python 3 (protocols 2–5), without Python.
//!
//! Nothing is ever executed: `GLOBAL` names become inert [`Value::Global`]s,
//! and only the few constructors we understand (`numpy` arrays and dtypes,
//! `_codecs.encode` for Python 3's protocol-2 bytes) are interpreted.

use std::collections::HashMap;

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// Python 2 `str` / Python 3 `bytes`.
    Bytes(Vec<u8>),
    Str(String),
    List(Vec<Value>),
    Tuple(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    Global(String, String),
    /// `callable(*args)`, with the state given by `BUILD` (if any).
    Object {
        callable: Box<Value>,
        args: Box<Value>,
        state: Option<Box<Value>>,
    },
    Mark,
}

impl Value {
    /// A key that is a Python 2 `str` or a Python 3 `str`.
    pub fn as_text(&self) -> Option<String> {
        match self {
            Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
            Value::Str(s) => Some(s.clone()),
            _ => None,
        }
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(items) => items.iter().find(|(k, _)| k.as_text().as_deref() == Some(key)).map(|(_, v)| v),
            _ => None,
        }
    }
}

fn err(at: usize, msg: impl std::fmt::Display) -> String {
    format!("pickle byte {at}: {msg}")
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.pos + n > self.b.len() {
            return Err(err(self.pos, format!("truncated: needs {n} more bytes, file has {}", self.b.len() - self.pos)));
        }
        let s = &self.b[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().unwrap()))
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
    fn line(&mut self) -> Result<&'a [u8], String> {
        let start = self.pos;
        let end = self.b[start..].iter().position(|&c| c == b'\n').ok_or_else(|| err(start, "unterminated line"))?;
        self.pos = start + end + 1;
        Ok(&self.b[start..start + end])
    }
}

fn pop_mark(stack: &mut Vec<Value>, at: usize) -> Result<Vec<Value>, String> {
    let m = stack.iter().rposition(|v| matches!(v, Value::Mark)).ok_or_else(|| err(at, "MARK not found"))?;
    let items = stack.split_off(m + 1);
    stack.pop();
    Ok(items)
}

fn pop(stack: &mut Vec<Value>, at: usize) -> Result<Value, String> {
    stack.pop().ok_or_else(|| err(at, "stack underflow"))
}

/// Applies `callable(args)` for the few constructors we understand.
fn reduce(callable: Value, args: Value) -> Value {
    if let (Value::Global(m, n), Value::Tuple(a)) = (&callable, &args) {
        if m == "_codecs" && n == "encode" {
            // Python 3 pickles bytes under protocol 2 as
            // _codecs.encode(<latin-1 text>, 'latin1').
            if let Some(Value::Str(s)) = a.first() {
                return Value::Bytes(s.chars().map(|c| c as u32 as u8).collect());
            }
        }
        if n == "bytearray" {
            if let Some(Value::Bytes(b)) = a.first() {
                return Value::Bytes(b.clone());
            }
        }
    }
    Value::Object { callable: Box::new(callable), args: Box::new(args), state: None }
}

/// Parses one pickle.
pub fn parse(bytes: &[u8]) -> Result<Value, String> {
    let mut vm = Machine { r: Reader { b: bytes, pos: 0 }, stack: Vec::new(), memo: HashMap::new() };
    loop {
        let at = vm.r.pos;
        let op = vm.r.u8()?;
        if op == b'.' {
            return pop(&mut vm.stack, at); // STOP
        }
        vm.step(op, at)?;
    }
}

/// The pickle virtual machine: the opcode stream, the stack and the memo.
/// Each opcode family has its method, which returns `None` / `false` for
/// an opcode outside its family.
struct Machine<'a> {
    r: Reader<'a>,
    stack: Vec<Value>,
    memo: HashMap<u64, Value>,
}

impl Machine<'_> {
    /// Runs opcode `op`, read at byte `at`.
    fn step(&mut self, op: u8, at: usize) -> Result<(), String> {
        if let Some(v) = self.number(op, at)? {
            self.stack.push(v);
        } else if let Some(v) = self.text(op)? {
            self.stack.push(v);
        } else if !(self.framing(op, at)?
            || self.collection(op, at)?
            || self.add_items(op, at)?
            || self.object(op, at)?
            || self.memo_op(op, at)?
            || self.stack_op(op, at)?)
        {
            return Err(err(at, format!("unsupported opcode 0x{op:02x}")));
        }
        Ok(())
    }

    /// PROTO and FRAME.
    fn framing(&mut self, op: u8, at: usize) -> Result<bool, String> {
        match op {
            0x80 => {
                let proto = self.r.u8()?;
                if proto > 5 {
                    return Err(err(at, format!("unsupported pickle protocol {proto}")));
                }
            }
            0x95 => {
                self.r.u64()?; // FRAME length: frames are only a buffering hint.
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// None, booleans, integers and floats.
    fn number(&mut self, op: u8, at: usize) -> Result<Option<Value>, String> {
        let r = &mut self.r;
        Ok(Some(match op {
            b'N' => Value::None,
            0x88 => Value::Bool(true),
            0x89 => Value::Bool(false),
            b'J' => Value::Int(r.u32()? as i32 as i64),
            b'K' => Value::Int(r.u8()? as i64),
            b'M' => Value::Int(r.u16()? as i64),
            0x8a | 0x8b => {
                let n = if op == 0x8a { r.u8()? as usize } else { r.u32()? as usize };
                let d = r.take(n)?;
                if n > 8 {
                    return Err(err(at, "integer too large"));
                }
                let mut v: i64 = 0;
                for (i, &byte) in d.iter().enumerate() {
                    v |= (byte as i64) << (8 * i);
                }
                if n > 0 && n < 8 && d[n - 1] & 0x80 != 0 {
                    v -= 1i64 << (8 * n);
                }
                Value::Int(v)
            }
            b'I' | b'L' => {
                let line = String::from_utf8_lossy(r.line()?).trim_end_matches('L').to_string();
                match line.as_str() {
                    "00" => Value::Bool(false),
                    "01" => Value::Bool(true),
                    s => Value::Int(s.parse().map_err(|_| err(at, format!("bad integer {s:?}")))?),
                }
            }
            b'G' => Value::Float(f64::from_be_bytes(r.take(8)?.try_into().unwrap())),
            b'F' => {
                let s = String::from_utf8_lossy(r.line()?).into_owned();
                Value::Float(s.parse().map_err(|_| err(at, "bad float"))?)
            }
            _ => return Ok(None),
        }))
    }

    /// Byte strings (Python 2 `str`, Python 3 `bytes`) and text.
    fn text(&mut self, op: u8) -> Result<Option<Value>, String> {
        let r = &mut self.r;
        let bytes = |r: &mut Reader, n: usize| -> Result<Value, String> { Ok(Value::Bytes(r.take(n)?.to_vec())) };
        let text = |r: &mut Reader, n: usize| -> Result<Value, String> { Ok(Value::Str(String::from_utf8_lossy(r.take(n)?).into_owned())) };
        Ok(Some(match op {
            b'U' | b'C' => {
                let n = r.u8()? as usize;
                bytes(r, n)?
            }
            b'T' | b'B' => {
                let n = r.u32()? as usize;
                bytes(r, n)?
            }
            0x8e | 0x96 => {
                let n = r.u64()? as usize;
                bytes(r, n)?
            }
            0x8c => {
                let n = r.u8()? as usize;
                text(r, n)?
            }
            b'X' => {
                let n = r.u32()? as usize;
                text(r, n)?
            }
            0x8d => {
                let n = r.u64()? as usize;
                text(r, n)?
            }
            b'S' => {
                // Protocol 0 string: a quoted repr; only simple quoting is handled.
                let line = String::from_utf8_lossy(r.line()?).into_owned();
                let s = line.trim_matches(|c| c == '\'' || c == '"');
                Value::Bytes(s.as_bytes().to_vec())
            }
            b'V' => Value::Str(String::from_utf8_lossy(r.line()?).into_owned()),
            _ => return Ok(None),
        }))
    }

    /// MARK, empty containers, and tuples, lists and dicts built from the
    /// stack.
    fn collection(&mut self, op: u8, at: usize) -> Result<bool, String> {
        let stack = &mut self.stack;
        let v = match op {
            b'(' => Value::Mark,
            b'}' => Value::Dict(Vec::new()),
            b']' => Value::List(Vec::new()),
            b')' => Value::Tuple(Vec::new()),
            0x8f => Value::List(Vec::new()), // EMPTY_SET, kept as a list
            b't' => Value::Tuple(pop_mark(stack, at)?),
            b'l' => Value::List(pop_mark(stack, at)?),
            b'd' => {
                let items = pop_mark(stack, at)?;
                Value::Dict(items.chunks(2).filter(|c| c.len() == 2).map(|c| (c[0].clone(), c[1].clone())).collect())
            }
            0x85..=0x87 => {
                let n = (op - 0x84) as usize;
                if stack.len() < n {
                    return Err(err(at, "stack underflow"));
                }
                Value::Tuple(stack.split_off(stack.len() - n))
            }
            _ => return Ok(false),
        };
        stack.push(v);
        Ok(true)
    }

    /// APPEND(S) to the list and SETITEM(S) to the dict on top of the stack.
    fn add_items(&mut self, op: u8, at: usize) -> Result<bool, String> {
        let stack = &mut self.stack;
        match op {
            b'a' => {
                let v = pop(stack, at)?;
                match stack.last_mut() {
                    Some(Value::List(l)) => l.push(v),
                    _ => return Err(err(at, "APPEND to a non-list")),
                }
            }
            b'e' | 0x90 => {
                let items = pop_mark(stack, at)?;
                match stack.last_mut() {
                    Some(Value::List(l)) => l.extend(items),
                    _ => return Err(err(at, "APPENDS to a non-list")),
                }
            }
            b's' => {
                let v = pop(stack, at)?;
                let k = pop(stack, at)?;
                match stack.last_mut() {
                    Some(Value::Dict(d)) => d.push((k, v)),
                    _ => return Err(err(at, "SETITEM on a non-dict")),
                }
            }
            b'u' => {
                let items = pop_mark(stack, at)?;
                match stack.last_mut() {
                    Some(Value::Dict(d)) => {
                        for c in items.chunks(2) {
                            if c.len() == 2 {
                                d.push((c[0].clone(), c[1].clone()));
                            }
                        }
                    }
                    _ => return Err(err(at, "SETITEMS on a non-dict")),
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// GLOBAL names and the objects made from them (REDUCE, NEWOBJ, BUILD);
    /// nothing is executed.
    fn object(&mut self, op: u8, at: usize) -> Result<bool, String> {
        let stack = &mut self.stack;
        match op {
            b'c' => {
                let module = String::from_utf8_lossy(self.r.line()?).into_owned();
                let name = String::from_utf8_lossy(self.r.line()?).into_owned();
                stack.push(Value::Global(module, name));
            }
            0x93 => {
                let name = pop(stack, at)?.as_text().ok_or_else(|| err(at, "STACK_GLOBAL name"))?;
                let module = pop(stack, at)?.as_text().ok_or_else(|| err(at, "STACK_GLOBAL module"))?;
                stack.push(Value::Global(module, name));
            }
            b'R' => {
                let args = pop(stack, at)?;
                let callable = pop(stack, at)?;
                stack.push(reduce(callable, args));
            }
            0x81 => {
                let args = pop(stack, at)?;
                let cls = pop(stack, at)?;
                stack.push(Value::Object { callable: Box::new(cls), args: Box::new(args), state: None });
            }
            b'b' => {
                let st = pop(stack, at)?;
                match stack.last_mut() {
                    Some(Value::Object { state, .. }) => *state = Some(Box::new(st)),
                    Some(_) => {} // BUILD on plain values (e.g. dict state) is ignored
                    None => return Err(err(at, "BUILD on empty stack")),
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// PUT, MEMOIZE and GET.
    fn memo_op(&mut self, op: u8, at: usize) -> Result<bool, String> {
        let r = &mut self.r;
        let put = match op {
            b'q' => Some(r.u8()? as u64),
            b'r' => Some(r.u32()? as u64),
            b'p' => Some(String::from_utf8_lossy(r.line()?).parse().map_err(|_| err(at, "bad PUT"))?),
            0x94 => Some(self.memo.len() as u64),
            _ => None,
        };
        if let Some(k) = put {
            let what = if op == 0x94 { "MEMOIZE on empty stack" } else { "PUT on empty stack" };
            self.memo.insert(k, self.stack.last().cloned().ok_or_else(|| err(at, what))?);
            return Ok(true);
        }
        let k = match op {
            b'h' => r.u8()? as u64,
            b'j' => r.u32()? as u64,
            b'g' => String::from_utf8_lossy(r.line()?).parse().map_err(|_| err(at, "bad GET"))?,
            _ => return Ok(false),
        };
        self.stack.push(self.memo.get(&k).cloned().ok_or_else(|| err(at, format!("memo key {k} missing")))?);
        Ok(true)
    }

    /// POP, POP_MARK and DUP.
    fn stack_op(&mut self, op: u8, at: usize) -> Result<bool, String> {
        let stack = &mut self.stack;
        match op {
            b'0' => {
                pop(stack, at)?;
            }
            b'1' => {
                pop_mark(stack, at)?;
            }
            b'2' => {
                let v = stack.last().cloned().ok_or_else(|| err(at, "DUP on empty stack"))?;
                stack.push(v);
            }
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// A numpy array decoded from a pickle: shape and raw little-endian data.
#[derive(Debug, PartialEq)]
pub struct NdArray {
    pub shape: Vec<usize>,
    pub dtype: String,
    pub data: Vec<u8>,
}

fn dtype_name(v: &Value) -> Option<String> {
    match v {
        Value::Object { callable, args, .. } if matches!(&**callable, Value::Global(_, n) if n == "dtype") => match &**args {
            Value::Tuple(a) => a.first()?.as_text(),
            _ => None,
        },
        other => other.as_text(),
    }
}

fn int_tuple(v: &Value) -> Option<Vec<usize>> {
    match v {
        Value::Tuple(t) | Value::List(t) => t
            .iter()
            .map(|x| match x {
                Value::Int(i) if *i >= 0 => Some(*i as usize),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

/// Interprets a pickled numpy array: `_reconstruct` + `BUILD` state
/// `(version, shape, dtype, is_fortran, rawdata)`, or protocol 5's
/// `_frombuffer(buffer, dtype, shape, order)`.
pub fn ndarray(v: &Value) -> Result<NdArray, String> {
    let Value::Object { callable, args, state } = v else {
        return Err("expected a numpy array".into());
    };
    let Value::Global(_, name) = &**callable else { return Err("expected a numpy array".into()) };
    match name.as_str() {
        "_reconstruct" => {
            let Some(Value::Tuple(st)) = state.as_deref() else { return Err("numpy array without state".into()) };
            if st.len() < 5 {
                return Err(format!("numpy array state has {} fields", st.len()));
            }
            let shape = int_tuple(&st[1]).ok_or("numpy array: bad shape")?;
            let dtype = dtype_name(&st[2]).ok_or("numpy array: bad dtype")?;
            if st[3] == Value::Bool(true) {
                return Err("Fortran-ordered arrays are not supported".into());
            }
            let data = match &st[4] {
                Value::Bytes(b) => b.clone(),
                Value::Str(s) => s.chars().map(|c| c as u32 as u8).collect(),
                _ => return Err("numpy array: object arrays are not supported".into()),
            };
            Ok(NdArray { shape, dtype, data })
        }
        "_frombuffer" => {
            let Value::Tuple(a) = &**args else { return Err("bad _frombuffer".into()) };
            if a.len() < 4 {
                return Err("bad _frombuffer".into());
            }
            let Value::Bytes(data) = &a[0] else { return Err("_frombuffer without in-band bytes".into()) };
            let dtype = dtype_name(&a[1]).ok_or("numpy array: bad dtype")?;
            let shape = int_tuple(&a[2]).ok_or("numpy array: bad shape")?;
            if a[3].as_text().as_deref() == Some("F") {
                return Err("Fortran-ordered arrays are not supported".into());
            }
            Ok(NdArray { shape, dtype, data: data.clone() })
        }
        other => Err(format!("expected a numpy array, found {other}")),
    }
}

/// Integers from a list, tuple or numpy integer array.
pub fn int_list(v: &Value) -> Result<Vec<i64>, String> {
    match v {
        Value::List(l) | Value::Tuple(l) => l
            .iter()
            .map(|x| match x {
                Value::Int(i) => Ok(*i),
                other => Err(format!("expected an integer, found {other:?}")),
            })
            .collect(),
        obj @ Value::Object { .. } => {
            let a = ndarray(obj)?;
            let d = &a.data;
            Ok(match a.dtype.trim_start_matches(['<', '|', '=']) {
                "u1" | "uint8" => d.iter().map(|&x| x as i64).collect(),
                "i1" | "int8" => d.iter().map(|&x| x as i8 as i64).collect(),
                "i4" | "int32" => d.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().unwrap()) as i64).collect(),
                "i8" | "int64" => d.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect(),
                other => return Err(format!("unsupported label dtype {other}")),
            })
        }
        other => Err(format!("expected a list of integers, found {}", short(other))),
    }
}

/// Strings from a list.
pub fn text_list(v: &Value) -> Result<Vec<String>, String> {
    match v {
        Value::List(l) | Value::Tuple(l) => l.iter().map(|x| x.as_text().ok_or_else(|| "expected a string".to_string())).collect(),
        other => Err(format!("expected a list of strings, found {}", short(other))),
    }
}

fn short(v: &Value) -> &'static str {
    match v {
        Value::None => "None",
        Value::Bool(_) => "bool",
        Value::Int(_) => "int",
        Value::Float(_) => "float",
        Value::Bytes(_) => "bytes",
        Value::Str(_) => "str",
        Value::List(_) => "list",
        Value::Tuple(_) => "tuple",
        Value::Dict(_) => "dict",
        Value::Global(..) => "global",
        Value::Object { .. } => "object",
        Value::Mark => "mark",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python3_protocol2_small_dict() {
        // pickle.dumps({'a': [1, 2], b'k': b'xy'}, protocol=2) from CPython 3.11:
        // bytes go through _codecs.encode(..., 'latin1').
        let p: &[u8] = b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01]q\x02(K\x01K\x02ec_codecs\nencode\nq\x03X\x01\x00\x00\x00kq\x04X\x06\x00\x00\x00latin1q\x05\x86q\x06Rq\x07c_codecs\nencode\nq\x08X\x02\x00\x00\x00xyq\th\x05\x86q\nRq\x0bu.";
        let v = parse(p).unwrap();
        assert_eq!(int_list(v.get("a").unwrap()).unwrap(), vec![1, 2]);
        assert_eq!(v.get("k"), Some(&Value::Bytes(b"xy".to_vec())));
    }

    #[test]
    fn negative_and_long_ints() {
        // [-1, 300, 70000, -70000, 2**40] with protocol 2
        let p: &[u8] = b"\x80\x02]q\x00(J\xff\xff\xff\xffM,\x01J\x70\x11\x01\x00J\x90\xee\xfe\xff\x8a\x06\x00\x00\x00\x00\x00\x01e.";
        assert_eq!(int_list(&parse(p).unwrap()).unwrap(), vec![-1, 300, 70000, -70000, 1 << 40]);
    }

    #[test]
    fn truncated_and_garbage_inputs_fail_cleanly() {
        assert!(parse(b"\x80\x02}q\x00(U\x04da").unwrap_err().contains("truncated"));
        assert!(parse(b"\xff").unwrap_err().contains("unsupported opcode"));
        assert!(parse(b"").is_err());
        assert!(parse(b"\x80\x09").unwrap_err().contains("protocol"));
    }
}
