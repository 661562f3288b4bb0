use std::collections::HashMap;
use std::fmt;
use std::iter::Peekable;
use std::str::Chars;

#[derive(Debug, Clone, PartialEq)]
pub enum Token {
    Number(f64),
    Ident(String),
    Str(String),
    Op(char),
    LParen,
    RParen,
    Comma,
}

#[derive(Debug)]
pub enum Error {
    UnexpectedChar(char, usize),
    UnterminatedString(usize),
    UnknownVariable(String),
    UnexpectedEnd,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::UnexpectedChar(c, at) => write!(f, "unexpected {:?} at {}", c, at),
            Error::UnterminatedString(at) => write!(f, "string starting at {} never ends", at),
            Error::UnknownVariable(name) => write!(f, "unknown variable {}", name),
            Error::UnexpectedEnd => write!(f, "unexpected end of input"),
        }
    }
}

pub struct Lexer<'a> {
    chars: Peekable<Chars<'a>>,
    offset: usize,
}

impl<'a> Lexer<'a> {
    pub fn new(source: &'a str) -> Self {
        Lexer {
            chars: source.chars().peekable(),
            offset: 0,
        }
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.chars.next()?;
        self.offset += c.len_utf8();
        Some(c)
    }

    fn number(&mut self, first: char) -> Token {
        let mut text = String::from(first);
        while let Some(&c) = self.chars.peek() {
            if c.is_ascii_digit() || c == '.' {
                text.push(c);
                self.bump();
            } else {
                break;
            }
        }
        Token::Number(text.parse().unwrap_or(0.0))
    }

    fn string(&mut self, start: usize) -> Result<Token, Error> {
        let mut text = String::new();
        loop {
            match self.bump() {
                Some('"') => return Ok(Token::Str(text)),
                Some('\\') => match self.bump() {
                    Some('n') => text.push('\n'),
                    Some(c) => text.push(c),
                    None => return Err(Error::UnterminatedString(start)),
                },
                Some(c) => text.push(c),
                None => return Err(Error::UnterminatedString(start)),
            }
        }
    }
}

impl<'a> Iterator for Lexer<'a> {
    type Item = Result<Token, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        while let Some(&c) = self.chars.peek() {
            if !c.is_whitespace() {
                break;
            }
            self.bump();
        }
        let start = self.offset;
        let c = self.bump()?;
        let token = match c {
            '0'..='9' => Ok(self.number(c)),
            '"' => self.string(start),
            '(' => Ok(Token::LParen),
            ')' => Ok(Token::RParen),
            ',' => Ok(Token::Comma),
            '+' | '-' | '*' | '/' => Ok(Token::Op(c)),
            c if c.is_alphabetic() || c == '_' => {
                let mut name = String::from(c);
                while let Some(&next) = self.chars.peek() {
                    if next.is_alphanumeric() || next == '_' {
                        name.push(next);
                        self.bump();
                    } else {
                        break;
                    }
                }
                Ok(Token::Ident(name))
            }
            other => Err(Error::UnexpectedChar(other, start)),
        };
        Some(token)
    }
}

pub struct Evaluator<'v> {
    variables: &'v HashMap<String, f64>,
}

impl<'v> Evaluator<'v> {
    pub fn new(variables: &'v HashMap<String, f64>) -> Self {
        Evaluator { variables }
    }

    pub fn eval(&self, tokens: &[Token]) -> Result<f64, Error> {
        let mut stack: Vec<f64> = Vec::new();
        let mut pending: Option<char> = None;
        for token in tokens {
            let value = match token {
                Token::Number(n) => *n,
                Token::Ident(name) => *self
                    .variables
                    .get(name)
                    .ok_or_else(|| Error::UnknownVariable(name.clone()))?,
                Token::Op(op) => {
                    pending = Some(*op);
                    continue;
                }
                _ => continue,
            };
            match (pending.take(), stack.pop()) {
                (Some('+'), Some(left)) => stack.push(left + value),
                (Some('-'), Some(left)) => stack.push(left - value),
                (Some('*'), Some(left)) => stack.push(left * value),
                (Some('/'), Some(left)) => stack.push(left / value),
                (_, Some(left)) => {
                    stack.push(left);
                    stack.push(value);
                }
                (_, None) => stack.push(value),
            }
        }
        stack.pop().ok_or(Error::UnexpectedEnd)
    }
}

pub fn tokenize(source: &str) -> Result<Vec<Token>, Error> {
    Lexer::new(source).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_numbers() {
        let tokens = tokenize("1 + 2").unwrap();
        let variables = HashMap::new();
        assert_eq!(Evaluator::new(&variables).eval(&tokens).unwrap(), 3.0);
    }

    #[test]
    fn reports_unknown_variables() {
        let tokens = tokenize("x * 2").unwrap();
        let variables = HashMap::new();
        let error = Evaluator::new(&variables).eval(&tokens).unwrap_err();
        assert!(matches!(error, Error::UnknownVariable(name) if name == "x"));
    }
}
